"""layers/build: the zips' contents import and work in a fresh venv of the target Python."""

from __future__ import annotations

import os
import subprocess
import zipfile
from typing import Any

import pytest

from .conftest import PYTHON, ROOT

CHECK = """
import sys
import numpy as np
from tfserverless import protocol
from tfserverless.platforms import aws_lambda, fc, wsgi
x = np.arange(6, dtype=np.float32).reshape(2, 3)
body = protocol.encode_request({"x": x}, signature_name="s")
assert np.array_equal(protocol.decode_request(body).inputs["x"].to_numpy("x"), x)
from tfserverless.protocol import jsonio
assert jsonio.orjson is not None  # the JSON protocols' fast path ships in the layer
from tfserverless.protocol import jsonfast
assert jsonfast.available()  # and big numeric arrays' (Python >= 3.9)
assert jsonio.dumps({"y": x}, [x]) == b'{"y":[[0.0,1.0,2.0],[3.0,4.0,5.0]]}'
assert "tensorflow" not in sys.modules
print("ok", sys.version_info[:2], np.__version__)
"""


def target_python(version: str) -> str:
    out = subprocess.run(["pyenv", "which", "python"], env=dict(os.environ, PYENV_VERSION=version),
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"Python {version} is not installed (pyenv)")
    return out.stdout.strip()


@pytest.mark.parametrize("platform,python", [("aws", "3.11.7"), ("fc", "3.9.18")])
def test_layer_imports_in_a_fresh_venv(platform: str, python: str, tmp_path: Any) -> None:
    short = ".".join(python.split(".")[:2])
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "layers", "build"), "--platform", platform,
                           "--python", short, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    zpath = tmp_path / f"tfserverless-{platform}-py{short}.zip"
    assert "MB zipped" in proc.stdout
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        assert all(n.startswith("python/") for n in names)
        assert "python/tfserverless/protocol/eas.py" in names
        assert not any(n.startswith("python/tensorflow") for n in names)
        zf.extractall(tmp_path / "opt")
    venv = tmp_path / "venv"
    subprocess.run([target_python(python), "-m", "venv", "--without-pip", str(venv)], check=True)
    run = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK],
                         env={"PYTHONPATH": str(tmp_path / "opt" / "python"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"ok ({short.replace('.', ', ')})")


LITERT_CHECK = """
import base64, json, sys, time
t0 = time.perf_counter()
import numpy as np
import main  # handler/main.py, as Lambda imports it
from tfserverless import protocol
event = json.load(open(sys.argv[1]))
x = np.full((2, 784), 0.5, np.float32)
event["rawPath"] = "/"
event["body"] = base64.b64encode(protocol.encode_request({"images": x})).decode()
reply = main.lambda_handler(event, None)
assert reply["statusCode"] == 200, reply
scores = protocol.decode_response(base64.b64decode(reply["body"]))["scores"]
assert scores.shape == (2, 10) and abs(float(scores.sum()) - 2.0) < 1e-4, scores
assert "tensorflow" not in sys.modules and "ai_edge_litert" in sys.modules
print("ok", round(time.perf_counter() - t0, 3))
"""


def test_litert_layer_serves_a_converted_model_within_lambdas_limit(sample_model: str,
                                                                   tmp_path: Any) -> None:
    """The Lambda zip path: the layer (engine + numpy + LiteRT) and handler/ as the function
    code, in a fresh Python without TensorFlow, answer an API Gateway event."""
    model = str(tmp_path / "model")
    conv = subprocess.run([PYTHON, "-m", "tfserverless", "convert", sample_model, model],
                          capture_output=True, text=True, timeout=300)
    assert conv.returncode == 0, conv.stderr[-2000:]
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "layers", "build"), "--platform", "aws",
                           "--runtime", "litert", "--python", "3.11", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fits AWS Lambda: function and layers unzipped (250 MB)" in proc.stdout, proc.stdout
    zpath = tmp_path / "tfserverless-aws-litert-py3.11.zip"
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        unzipped = sum(i.file_size for i in zf.infolist())
        assert not any(n.startswith("python/tensorflow") for n in names)
        # bytecode for the target Python ships in the zip: /opt is read-only on Lambda
        assert "python/tfserverless/serving/__pycache__/app.cpython-311.pyc" in names
        zf.extractall(tmp_path / "opt")
    handler_size = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, fs in os.walk(os.path.join(ROOT, "handler")) for f in fs)
    assert unzipped + handler_size < 250 * 1000 * 1000
    venv = tmp_path / "venv"
    subprocess.run([target_python("3.11.7"), "-m", "venv", "--without-pip", str(venv)], check=True)
    event = os.path.join(ROOT, "tests", "data", "apigw_v2_http.json")
    run = subprocess.run([str(venv / "bin" / "python"), "-c", LITERT_CHECK, event],
                         env={"PYTHONPATH": f"{ROOT}/handler:{tmp_path}/opt/python",
                              "PATH": "/usr/bin:/bin", "MODEL_PATH": model, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok "), run.stdout
