"""The vendored gRPC protos (tests/data/proto) compiled with grpcio-tools' protoc, in this
process (no subprocess: the fast lane may use them): protobuf's own generated classes, the
oracle the hand-written gRPC codecs are checked against."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Dict, Sequence

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "proto")


def compile_protos(out: str, files: Sequence[str] = ("grpc_service.proto", "model_config.proto",
                                                     "health.proto")) -> Dict[str, ModuleType]:
    """``files`` compiled into ``out`` and imported: {"grpc_service": module, ...}."""
    import grpc_tools
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", *files])
    assert rc == 0, f"protoc failed ({rc}) on {files}"
    sys.path.insert(0, out)
    try:
        return {f[:-len(".proto")]: importlib.import_module(f[:-len(".proto")] + "_pb2")
                for f in files}
    finally:
        sys.path.remove(out)
