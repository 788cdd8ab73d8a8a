"""Fetch + extract a ~200 MB model archive from a loopback S3 server (moto, server mode).

Ours (``storage.fetch``: streaming extraction while downloading) vs boto3 ``download_file``
followed by ``tarfile.extractall``, in the same run, best of interleaved rounds.
Target: ours/baseline <= 1.0x.  Then the cold-start timeline of the sample model from S3.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

from _common import ROOT

from tfserverless import storage
from tfserverless.config import Config

SIZE = int(os.environ.get("BENCH_ARCHIVE_MB", "200")) << 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_archive() -> bytes:
    """A SavedModel-shaped tar.gz: a small graph and ~200 MB of (incompressible) variables."""
    buf = io.BytesIO()
    rng = os.urandom
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in (("model/saved_model.pb", rng(200_000)),
                           ("model/variables/variables.index", rng(10_000)),
                           ("model/variables/variables.data-00000-of-00001", rng(SIZE))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> None:
    import boto3

    port = free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H",
                             "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    env = {"S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    work = tempfile.mkdtemp(prefix="fetch-bench-")
    try:
        s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name="us-east-1")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.2)
        data = build_archive()
        s3.put_object(Bucket="bench", Key="model.tar.gz", Body=data)
        print(f"fetch: {len(data) / 1e6:.0f} MB tar.gz from moto S3 on loopback, "
              f"best of {ROUNDS} interleaved rounds")
        ours_t, base_t = float("inf"), float("inf")
        for r in range(ROUNDS):
            cache = os.path.join(work, f"cache{r}")
            cfg = Config.from_environ(dict(env, MODEL_PATH="s3://bench/model.tar.gz",
                                           MODEL_CACHE_DIR=cache))
            t0 = time.perf_counter()
            got = storage.fetch_model(cfg)
            ours_t = min(ours_t, time.perf_counter() - t0)
            assert os.path.getsize(os.path.join(got.path, "variables",
                                                "variables.data-00000-of-00001")) == SIZE
            shutil.rmtree(cache)

            dest = os.path.join(work, f"base{r}")
            t0 = time.perf_counter()
            s3.download_file("bench", "model.tar.gz", dest + ".tar.gz")
            with tarfile.open(dest + ".tar.gz") as tar:
                tar.extractall(dest, filter="data") if sys.version_info >= (3, 12) else tar.extractall(dest)
            base_t = min(base_t, time.perf_counter() - t0)
            shutil.rmtree(dest)
            os.unlink(dest + ".tar.gz")
        print(f"  ours (streaming extract while downloading): {ours_t:6.2f} s "
              f"({len(data) / ours_t / 1e6:.0f} MB/s)")
        print(f"  boto3 download_file + tarfile.extractall:  {base_t:6.2f} s "
              f"({len(data) / base_t / 1e6:.0f} MB/s)")
        print(f"  RATIO fetch+extract ours/baseline: {ours_t / base_t:.2f}x (target <= 1.0x)")

        # cold-start timeline of the sample model, fetched from S3
        sample = os.path.join(ROOT, "samples", "mnist")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(sample, arcname="mnist/1")
        s3.put_object(Bucket="bench", Key="mnist.tar.gz", Body=buf.getvalue())
        logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stdout)
        from tfserverless.serving.app import create_service

        svc = create_service({}, config=Config.from_environ(dict(
            env, MODEL_PATH="s3://bench/mnist.tar.gz", MODEL_CACHE_DIR=os.path.join(work, "s"))))
        logging.getLogger("tfserverless").handlers[0].setFormatter(logging.Formatter("  %(message)s"))
        print("cold-start timeline, sample model from s3://:")
        svc.holder.load_now()
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
