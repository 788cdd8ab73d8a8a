"""Importing the package (and the deployable handler) loads no heavy dependency."""

from __future__ import annotations

import subprocess

from .conftest import PYTHON, ROOT

CHECK = """
import sys, os, runpy
import tfserverless, tfserverless.protocol, tfserverless.serving.service, tfserverless.config
import tfserverless.protocol.tfserving, tfserverless.protocol.v2
import tfserverless.storage, tfserverless.platforms.gcf, tfserverless.serving.app, tfserverless.sizing
import tfserverless.platforms.grpc, tfserverless.server
os.environ.setdefault("MODEL_PATH", "s3://bucket/never-fetched.tar.gz")  # remote: lazy
os.environ["GRPC_PORT"] = "18500"  # asked for, and still not imported before a worker starts
runpy.run_path("handler/main.py")
tfserverless.server.grpc_refusal(os.environ, 8080, True)
heavy = [m for m in ("tensorflow", "boto3", "botocore", "oss2", "google.protobuf", "grpc")
         if m in sys.modules]
print(",".join(heavy))
"""


def test_import_loads_no_tensorflow_boto3_protobuf_or_grpc() -> None:
    proc = subprocess.run([PYTHON, "-c", CHECK], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported at package import: {proc.stdout.strip()}"
