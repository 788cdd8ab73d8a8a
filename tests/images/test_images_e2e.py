"""Built images, run as containers, driven over HTTP with the EAS SDK (``make images-e2e``).

The Makefile builds the images (a debootstrap base imported into a local Docker daemon) and
names them in ``TFS_IMAGES``; ``DOCKER_HOST`` points at that daemon.  Without them this module
skips: plain ``make test`` does not build images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator

import numpy as np
import pytest
import requests

from tfserverless import protocol

from ..conftest import PYTHON, eas_call, free_port

#: the images this run drives: ``-fc`` ones (FC's custom container) in test_fc_image.py
IMAGES = [i for i in os.environ.get("TFS_IMAGES", "").split(",") if i and not i.endswith("-fc")]
TOKEN = "image-token-2718"
pytestmark = pytest.mark.skipif(not IMAGES, reason="run by make images-e2e (no Cloud Run image)")


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def wait_ready(url: str, cid: str, timeout: float = 120.0) -> requests.Response:
    """Until ``url`` answers 200 (a readiness probe), that answer; or fail with the
    container's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=2)
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered 200: {docker('logs', cid)[-3000:]}")


def litert(image: str) -> bool:
    return image.startswith("tfserverless:litert_cpu")


def mnist_for(image: str, models: Dict[str, str]) -> str:
    """A world-readable folder holding ``tf1_mnist`` as ``image`` serves it (the container runs
    as uid 10001): the SavedModel, or for our LiteRT processor what `tfserverless convert` wrote."""
    model_root = tempfile.mkdtemp(prefix="tfs-image-models-")
    os.chmod(model_root, 0o755)
    if litert(image):
        conv = subprocess.run([PYTHON, "-m", "tfserverless", "convert", models["tf1_mnist"],
                               os.path.join(model_root, "tf1_mnist"), "--signatures",
                               "predict_images"], capture_output=True, text=True, timeout=300)
        assert conv.returncode == 0, conv.stderr[-2000:]
    else:
        shutil.copytree(models["tf1_mnist"], os.path.join(model_root, "tf1_mnist"))
    subprocess.run(["chmod", "-R", "a+rX", model_root], check=True)
    return model_root


@pytest.fixture(scope="module", params=IMAGES or ["none"])  # one container an image: vfs copies its rootfs
def container(request: Any, models: Dict[str, str]) -> Iterator[Dict[str, Any]]:
    image = request.param
    port, grpc_port = free_port(), free_port()
    model_root = mnist_for(image, models)
    cid = docker("run", "-d", "--network", "host", "-e", f"PORT={port}",
                 "-e", f"GRPC_PORT={grpc_port}", "-e", "MODEL_PATH=/models/tf1_mnist",
                 "-e", f"SERVICE_TOKEN={TOKEN}",
                 "-e", "SERVICE_NAME=mnist", "-v", f"{model_root}:/models:ro", image)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/healthz", cid)
        yield {"image": image, "id": cid, "url": url, "grpc": f"127.0.0.1:{grpc_port}"}
    finally:
        docker("rm", "-f", cid, check=False)
        shutil.rmtree(model_root, ignore_errors=True)


def test_sdk_and_bad_inputs(container: Dict[str, Any]) -> None:
    url = container["url"]
    x = np.random.RandomState(0).rand(2, 784).astype(np.float32)
    res = eas_call({"endpoint": url, "service": "mnist", "token": TOKEN, "requests": [
        {"signature": "predict_images",
         "feeds": [{"name": "images", "shape": [2, 784], "dtype": 1,
                    "values": x.reshape(-1).tolist()}]},
        {"signature": "nope",
         "feeds": [{"name": "images", "shape": [2, 784], "dtype": 1,
                    "values": x.reshape(-1).tolist()}]},
        {"signature": "predict_images",
         "feeds": [{"name": "images", "shape": [3, 784], "dtype": 1,
                    "values": x.reshape(-1).tolist()}]},
    ]})
    assert res[0]["ok"] and res[0]["outputs"]["scores"]["shape"] == [2, 10]
    assert res[1]["status"] == 400 and "unknown signature_name" in res[1]["body"]
    assert res[2]["status"] == 400 and "needs 2352" in res[2]["body"]
    auth = {"Authorization": TOKEN}
    for body, status in ((b"\xff\xfe\xfd", 400), (b'{"a": 1}', 400),
                         (protocol.encode_request({"images": x}, signature_name="predict_images"), 200)):
        assert requests.post(url + "/api/predict/mnist", data=body, headers=auth).status_code == status
    assert requests.post(url + "/api/predict/mnist", data=b"x").status_code == 401
    # each worker loads its own copy: the fixture's first 200 came from one of them, and
    # SO_REUSEPORT may hand this probe to another still loading (as a platform's probe
    # would be, retried)
    health = wait_ready(url + "/healthz", container["id"])
    assert health.json()["status"] == "ready"
    # the image serves the bare ASGI app (`tfserverless serve`) on gunicorn's uvicorn worker
    assert health.headers.get("server") == "uvicorn", health.headers
    assert docker("exec", container["id"], "/opt/venv/bin/python", "-c", "import httptools, uvloop") == ""
    has_tf = docker("exec", container["id"], "/opt/venv/bin/python", "-c",
                    "import importlib.util as u; print(u.find_spec('tensorflow') is not None)")
    assert has_tf == str(not litert(container["image"]))  # litert_cpu: no TensorFlow at all
    if litert(container["image"]):
        assert requests.get(url + "/healthz", headers=auth).json()["runtime"].startswith(
            "ai-edge-litert")


def test_image_is_non_root_without_build_secrets(container: Dict[str, Any]) -> None:
    assert docker("exec", container["id"], "id", "-u") == "10001"
    found = docker("run", "--rm", "--entrypoint", "sh", container["image"], "-c",
                   "ls /tmp/build-only /tmp/requirements.txt 2>/dev/null; "
                   "command -v gcc cc g++ make >/dev/null && echo tools || true", check=False)
    assert "ca-bundle" not in found and "tools" not in found, found
    # bytecode compiled at build time: the image cannot write it, cold starts would compile
    cached = docker("exec", container["id"], "/opt/venv/bin/python", "-c",
                    "import os, numpy, tfserverless.serving.app as a; print(os.path.isfile(a.__cached__), "
                    "os.path.isfile(numpy.__cached__))")
    assert cached == "True True", cached


def test_grpc_beside_http(container: Dict[str, Any]) -> None:
    """The image has grpcio: GRPC_PORT serves gRPC beside HTTP (health, and V2's ModelReady
    with the token as metadata, refused without it)."""
    import grpc

    with grpc.insecure_channel(container["grpc"]) as ch:
        assert ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=30) == b"\x08\x01"
        ready = ch.unary_unary("/inference.GRPCInferenceService/ModelReady")
        assert ready(b"\n\x05mnist", timeout=30, metadata=(("authorization", TOKEN),)) == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as e:
            ready(b"\n\x05mnist", timeout=30)
        assert e.value.code().name == "UNAUTHENTICATED"


def _sagemaker_model(image: str, root: str) -> None:
    """half_plus_two as SageMaker unpacks a model: ``/opt/ml/model/half_plus_two/00000123``
    (for litert_cpu, TF Serving's TF2 export converted: LiteRT cannot lift TF1 variables)."""
    data = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tfserving")
    dest = os.path.join(root, "half_plus_two", "00000123")
    if litert(image):
        conv = subprocess.run([PYTHON, "-m", "tfserverless", "convert",
                               os.path.join(data, "saved_model_half_plus_two_tf2_cpu", "00000123"),
                               dest, "--signatures", "serving_default"],
                              capture_output=True, text=True, timeout=300)
        assert conv.returncode == 0, conv.stderr[-2000:]
    else:
        shutil.copytree(os.path.join(data, "saved_model_half_plus_two_cpu", "00000123"), dest)
    subprocess.run(["chmod", "-R", "a+rX", root], check=True)


def test_runs_as_sagemaker_runs_it(container: Dict[str, Any]) -> None:
    """``docker run IMAGE serve`` with the model at /opt/ml/model (SageMaker's contract): 8080
    when this machine has it free, else SAGEMAKER_BIND_TO_PORT; /ping, then /invocations in
    each content type and custom attribute, answering what /v1 answers in the same container,
    and boto3's ``invoke_endpoint`` on SageMaker Runtime's own path."""
    import socket

    import boto3

    image = container["image"]
    with socket.socket() as s:
        port = 8080 if s.connect_ex(("127.0.0.1", 8080)) != 0 else free_port()
    root = tempfile.mkdtemp(prefix="tfs-image-opt-ml-model-")
    os.chmod(root, 0o755)
    _sagemaker_model(image, root)
    env = [] if port == 8080 else ["-e", f"SAGEMAKER_BIND_TO_PORT={port}"]
    cid = docker("run", "-d", "--network", "host", *env, "-v", f"{root}:/opt/ml/model:ro",
                 image, "serve")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/ping", cid)  # SageMaker polls it, 2 s a try
        attrs = "X-Amzn-SageMaker-Custom-Attributes"
        x = [1.0, 2.0, 5.0]  # half_plus_two's x: rank 1 in the LiteRT conversion
        cases = [({"Content-Type": "application/json"}, json.dumps({"instances": x})),
                 ({"Content-Type": "application/json; charset=utf-8", attrs: "tfs-model-name="
                   "half_plus_two,tfs-model-version=123"}, json.dumps({"instances": x})),
                 ({"Content-Type": "application/jsonlines"},
                  "".join(json.dumps({"x": v}) + "\n" for v in x)),
                 ({"Content-Type": "text/csv"}, "1.0\n2.0\n5.0\n")]
        want = requests.post(url + "/v1/models/half_plus_two:predict", json={"instances": x})
        assert want.status_code == 200, want.text
        assert np.allclose(np.array(want.json()["predictions"]).reshape(-1), [2.5, 3.0, 4.5])
        for headers, body in cases:
            got = requests.post(url + "/invocations", data=body, headers=headers)
            assert (got.status_code, got.json()) == (200, want.json()), (headers, got.text)
        gone = requests.post(url + "/invocations", data=json.dumps(x), headers={
            "Content-Type": "application/json", attrs: "tfs-model-name=half_plus_three"})
        assert gone.status_code == 404 and "half_plus_three" in gone.json()["error"]
        client = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        r = client.invoke_endpoint(EndpointName="half-plus-two", ContentType="application/json",
                                   Body=json.dumps({"instances": x}).encode())
        assert json.loads(r["Body"].read()) == want.json()
    finally:
        docker("rm", "-f", cid, check=False)
        shutil.rmtree(root, ignore_errors=True)
