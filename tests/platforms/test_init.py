"""Init hooks: Lambda loads during module import (within its budget), FC's initializer uses
the credentials in its context, FC 2.0's WSGI handler answers the EAS SDK over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from typing import Any, Dict, List
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np

from tfserverless.serving.service import Service

from ..conftest import DATA, PYTHON, ROOT, FileServer, MotoServer, eas_call
from ..storage import archives
from .conftest import SERVICE, TOKEN, make_service

LAMBDA = """
import json, sys, time, base64
sys.path.insert(0, "handler")
t0 = time.monotonic()
import main
print(json.dumps({"import_s": time.monotonic() - t0, "state": main.service.holder.state}))
ev = json.load(open(sys.argv[1]))
ev["headers"]["authorization"] = sys.argv[2]
ev["body"] = ""
reply = main.lambda_handler(ev, None)
print(json.dumps({"status": reply["statusCode"], "body": reply["body"][:300],
                  "state": main.service.holder.state}))
"""


def run_lambda(env: Dict[str, str]) -> List[Dict[str, Any]]:
    full = dict(os.environ, AWS_LAMBDA_FUNCTION_NAME="tfserverless", TF_CPP_MIN_LOG_LEVEL="2")
    full.update(env)
    proc = subprocess.run([PYTHON, "-c", LAMBDA, os.path.join(DATA, "apigw_v2_http.json"), TOKEN],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.strip().splitlines() if x.startswith("{")]
    lines.append({"log": proc.stderr})
    return lines


def test_lambda_loads_during_init(models: Dict[str, str]) -> None:
    after_import, first, log = run_lambda({"MODEL_PATH": models["counter"],
                                           "SERVICE_TOKEN": TOKEN})
    assert after_import["state"] == "ready"  # import (the init phase) loaded and warmed up
    assert first["status"] == 200 and '"signature_name": "serving_default"' in first["body"]
    assert "Lambda init: model ready" in log["log"] and "warm-up: 1 request(s) x 5" in log["log"]
    # then once through the service, in the init hook's thread (where the handler runs)
    assert "Lambda init: warm-up through the service: 1 request(s)" in log["log"]
    assert log["log"].index("warm-up through the service") < log["log"].index("model ready")


def test_lambda_init_budget_overrun_finishes_on_first_request(models: Dict[str, str]) -> None:
    after_import, first, log = run_lambda({"MODEL_PATH": models["counter"],
                                           "SERVICE_TOKEN": TOKEN, "INIT_LOAD_BUDGET": "0"})
    assert after_import["state"] == "loading"
    assert "init budget of 0s spent" in log["log"]
    assert first["status"] == 200 and first["state"] == "ready"
    assert "cold start: fetch+extract" in log["log"]


class _Creds:
    def __init__(self, key_id: str, secret: str, token: str) -> None:
        self.access_key_id = key_id
        self.access_key_secret = secret
        self.security_token = token


class _Context:
    def __init__(self, creds: _Creds) -> None:
        self.credentials = creds
        self.request_id = "init-" + uuid.uuid4().hex


def test_fc_initializer_uses_context_credentials(files: FileServer, models: Dict[str, str],
                                                 tmp_path: Any) -> None:
    """oss:// through oss2, path-style to a loopback server that records what was sent."""
    seen: List[Dict[str, str]] = []
    files.files["/bucket/m.tgz"] = archives.tar_of(models["tf1_mnist"])
    original = files.httpd.RequestHandlerClass.do_GET  # type: ignore[attr-defined]

    def recording_get(handler: Any) -> None:
        seen.append({k.lower(): v for k, v in handler.headers.items()})
        original(handler)

    files.httpd.RequestHandlerClass.do_GET = recording_get  # type: ignore[attr-defined]
    from tfserverless.config import Config
    from tfserverless.platforms import fc
    from tfserverless.serving.app import create_service

    service = create_service({}, config=Config.from_environ({
        "MODEL_PATH": "oss://bucket/m.tgz", "OSS_ENDPOINT": files.url,
        "MODEL_CACHE_DIR": str(tmp_path / "c"), "FC_FUNCTION_NAME": "f", "LOG_LEVEL": "WARNING"}))
    fc.make_initializer(service)(_Context(_Creds("STS.keyid42", "sts-secret", "sts-token-xyz")))
    assert service.holder.state == "ready"
    assert seen and seen[0]["authorization"].startswith("OSS STS.keyid42:")
    assert seen[0]["x-oss-security-token"] == "sts-token-xyz"
    service.holder.model.close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_fc2_wsgi_over_http_with_the_sdk(mnist_service: Service) -> None:
    from tfserverless.platforms import fc

    handler = fc.make_handler(mnist_service)
    httpd = make_server("127.0.0.1", 0, lambda e, s: handler(e, s), handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}"
        x = np.random.RandomState(5).rand(784).astype(np.float32)
        res = eas_call({"endpoint": url, "service": SERVICE, "token": TOKEN, "requests": [
            {"signature": "predict_images",
             "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1, "values": x.tolist()}]},
            {"signature": "nope",
             "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1, "values": x.tolist()}]},
        ]})
        assert res[0]["ok"] and res[0]["outputs"]["scores"]["shape"] == [1, 10]
        assert res[1]["status"] == 400 and "unknown signature_name 'nope'" in res[1]["body"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fc_oss_prefix_model_from_moto(moto: MotoServer, models: Dict[str, str],
                                       tmp_path: Any) -> None:
    bucket = "fc-" + uuid.uuid4().hex[:10]
    moto.client().create_bucket(Bucket=bucket)
    for rel, data in archives.tree(models["tf1_mnist"]).items():
        moto.client().put_object(Bucket=bucket, Key="export/7/" + rel, Body=data)
    service = make_service(f"oss://{bucket}/export/", **dict(moto.env(),
                           MODEL_CACHE_DIR=str(tmp_path / "c")))
    assert service.holder.model.path.endswith(os.path.join("export", "7")) or \
        service.holder.model.path.endswith("7")
    service.holder.model.close()


def test_fc_custom_container_initialize_then_traffic(models: Dict[str, str], tmp_path: Any) -> None:
    """The fc image runs ``gunicorn main:fc_app``: FC calls POST /initialize (credentials in
    x-fc-* headers), then sends traffic.  Here the WSGI app behind a real HTTP server."""
    import requests

    from tfserverless.config import Config
    from tfserverless.platforms import fc
    from tfserverless.serving.app import create_service

    service = create_service({}, config=Config.from_environ({
        "MODEL_PATH": models["tf1_mnist"], "FC_FUNCTION_NAME": "f", "LOG_LEVEL": "WARNING"}))
    app = fc.make_container_app(service)
    httpd = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        assert requests.get(url + "/healthz").status_code in (200, 503)
        r = requests.post(url + "/initialize", headers={
            "x-fc-access-key-id": "STS.k", "x-fc-access-key-secret": "s",
            "x-fc-security-token": "t"})
        assert r.status_code == 200 and r.text == "initialized\n"
        assert service.config.environ["ALIBABA_CLOUD_SECURITY_TOKEN"] == "t"
        assert requests.get(url + "/healthz").json()["status"] == "ready"
        res = eas_call({"custom_url": url + "/", "requests": [{"signature": "predict_images",
                        "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1,
                                   "values": [0.0] * 784}]}]})
        assert res[0]["ok"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        service.holder.model.close()
