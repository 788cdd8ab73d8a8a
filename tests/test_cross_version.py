"""Models exported by one TensorFlow, served by another (run by ``make compat``, which builds
the foreign models with the other processor's TensorFlow and names them in
``TFS_FOREIGN_MODELS``, a JSON object of name -> path)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import pytest
import requests

from .conftest import eas_call

FOREIGN: Dict[str, str] = json.loads(os.environ.get("TFS_FOREIGN_MODELS") or "{}")


def tf_major() -> int:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import tensorflow as tf; print(tf.__version__)"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split(".")[0])


def foreign(name: str) -> str:
    if name not in FOREIGN:
        pytest.skip(f"{name} is built by another TensorFlow: run `make compat`")
    return FOREIGN[name]


def test_tf1_15_export_served_by_this_tensorflow(start_server: Any) -> None:
    path = foreign("tf1_15_mnist")
    s = start_server({"MODEL_PATH": path})
    [res] = eas_call({"custom_url": s.url + "/", "requests": [{
        "signature": "predict_images",
        "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1, "values": [0.2] * 784}]}]})
    assert res["ok"] and res["outputs"]["scores"]["shape"] == [1, 10]


def test_tf2_only_export_refused_clearly_by_tf1(start_server: Any) -> None:
    path = foreign("tf2_native")
    if tf_major() >= 2:
        pytest.skip("this TensorFlow loads TF2 exports")
    s = start_server({"MODEL_PATH": path}, wait_ready=False)
    health = s.wait_ready(status=503)
    while health["status"] == "loading":
        health = requests.get(s.url + "/healthz").json()
    assert health["status"] == "failed"
    assert "cannot load the SavedModel" in health["error"] and "TensorFlow 1." in health["error"]
    r = requests.post(s.url + "/", data=b"\x0a\x00")
    assert r.status_code == 503 and "cannot load the SavedModel" in r.text
    assert r.text.count("\n") == 1


def test_tf1_15_export_converted_and_served_by_litert(start_server: Any, tmp_path: Any) -> None:
    """The TF 1.15 export, converted by this TensorFlow and served by LiteRT (no TensorFlow)."""
    import importlib.util
    import subprocess
    import sys

    path = foreign("tf1_15_mnist")
    if importlib.util.find_spec("ai_edge_litert") is None or tf_major() < 2:
        pytest.skip("convert needs TensorFlow 2 and LiteRT: the dev venv runs this")
    out = str(tmp_path / "lite")
    conv = subprocess.run([sys.executable, "-m", "tfserverless", "convert", path, out,
                           "--signatures", "predict_images"], capture_output=True, text=True,
                          timeout=300)
    assert conv.returncode == 0, conv.stderr[-2000:]
    with open(os.path.join(out, "litert.json")) as f:
        assert json.load(f)["signatures"]["predict_images"]["inputs"]["images"]["shape"] == [-1, 784]
    s = start_server({"MODEL_PATH": out})
    [res] = eas_call({"custom_url": s.url + "/", "requests": [{
        "signature": "predict_images",
        "feeds": [{"name": "images", "shape": [2, 784], "dtype": 1, "values": [0.2] * 1568}]}]})
    assert res["ok"] and res["outputs"]["scores"]["shape"] == [2, 10]
    assert requests.get(s.url + "/healthz").json()["runtime"].startswith("ai-edge-litert")
