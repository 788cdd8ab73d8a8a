"""The ``fc`` flavour's image, what ``s-image.yaml`` deploys for a TensorFlow processor on
Function Compute, run as FC runs a custom container (``make images-e2e``): its own CMD
(gunicorn on port 9000 serving ``main:fc_app``), the model loaded by FC's initializer call
``POST /initialize``, then traffic from the EAS SDK.  Skips unless ``TFS_IMAGES`` names an
``-fc`` image."""

from __future__ import annotations

import os
import shutil
import socket
import time
from typing import Dict

import numpy as np
import pytest
import requests

from ..conftest import eas_call, free_port
from .test_images_e2e import TOKEN, docker, mnist_for

FC_IMAGES = [i for i in os.environ.get("TFS_IMAGES", "").split(",") if i.endswith("-fc")]
pytestmark = pytest.mark.skipif(not FC_IMAGES, reason="run by make images-e2e (no -fc image)")
FC_PORT = 9000  # packaging/build's fc flavour, s-image.yaml's customContainerConfig.port


def answering(url: str, cid: str, timeout: float = 120.0) -> requests.Response:
    """The first answer ``url`` gives, whatever its status (before /initialize: 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=2)
        except requests.RequestException:
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered: {docker('logs', cid)[-3000:]}")


@pytest.mark.parametrize("image", FC_IMAGES or ["none"])
def test_fc_custom_container_initializes_then_serves(image: str, models: Dict[str, str]) -> None:
    with socket.socket() as s:  # the image's own CMD where this machine has its port free
        free = s.connect_ex(("127.0.0.1", FC_PORT)) != 0
    port = FC_PORT if free else free_port()
    cmd = [] if free else ["gunicorn", "--bind", f"0.0.0.0:{port}", "--threads", "8", "--timeout",
                           "0", "--chdir", "/app/handler", "main:fc_app"]
    model_root = mnist_for(image, models)
    cid = docker("run", "-d", "--network", "host", "-e", "MODEL_PATH=/models/tf1_mnist",
                 "-e", f"SERVICE_TOKEN={TOKEN}", "-e", "SERVICE_NAME=mnist",
                 "-v", f"{model_root}:/models:ro", image, *cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        assert answering(url + "/healthz", cid).status_code in (200, 503)
        init = requests.post(url + "/initialize", headers={"x-fc-request-id": "init-1"}, timeout=120)
        assert (init.status_code, init.text) == (200, "initialized\n"), docker("logs", cid)[-3000:]
        assert requests.get(url + "/healthz").json()["status"] == "ready"
        x = np.random.RandomState(0).rand(2, 784).astype(np.float32)
        res = eas_call({"endpoint": url, "service": "mnist", "token": TOKEN, "requests": [
            {"signature": "predict_images", "feeds": [{"name": "images", "shape": [2, 784],
                                                       "dtype": 1, "values": x.reshape(-1).tolist()}]}]})
        assert res[0]["ok"] and res[0]["outputs"]["scores"]["shape"] == [2, 10], res
        assert requests.post(url + "/api/predict/mnist", data=b"x").status_code == 401
        assert docker("exec", cid, "id", "-u") == "10001"
        # gunicorn alone serves it: no functions-framework in this flavour
        assert docker("exec", cid, "/opt/venv/bin/python", "-c", "import importlib.util as u; "
                      "print(u.find_spec('functions_framework') is None)") == "True"
    finally:
        docker("rm", "-f", cid, check=False)
        shutil.rmtree(model_root, ignore_errors=True)
