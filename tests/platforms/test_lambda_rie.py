"""Lambda under its real runtime: the runtime interface emulator in front of awslambdaric,
for the image's CMD (a SavedModel, TensorFlow) and the zip function's handler (the LiteRT
layer ``layers/build`` makes, a converted model, no TensorFlow), driven over the emulator's
invoke API with the sample events (API Gateway REST and HTTP API, ALB, function URL)
carrying EAS protobuf, TF Serving JSON and V2 binary.  Each reply is the in-process
handler's, and what the model computes.  The init (start to the first reply, and our init
hook's share) is measured and printed; what is asserted is what happened, in order."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest

from tfserverless import protocol
from tfserverless.platforms import aws_lambda

from ..conftest import PYTHON, ROOT
from .conftest import fixture, lambda_event, make_service, unpack_lambda
from .rie import Function, base_env, image_function, zip_function, zip_layout

# the compat venvs (make compat: TF 1.15 on Python 3.7, TF 2.7 on 3.9) test the engine on old
# TensorFlow and have no awslambdaric; Lambda runs neither of those Pythons now, and make test
# runs this module on the dev venv, which has it
pytestmark = pytest.mark.skipif(bool(os.environ.get("TFS_COMPAT")),
                                reason="Lambda's runtime (awslambdaric) runs in make test's venv")

EVENTS = ["apigw_v1_rest", "apigw_v2_http", "alb", "lambda_function_url"]
NAME = "multi"
A = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.full((2, 3), 0.5, np.float32)
READY = re.compile(r"Lambda init: model ready in ([0-9.]+)s")


def _v2_binary() -> Tuple[Dict[str, str], bytes]:
    head = json.dumps({"inputs": [
        {"name": n, "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}}
        for n in ("a", "b")], "parameters": {"binary_data_output": True}}).encode()
    return ({"Content-Type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(head))}, head + A.tobytes() + B.tobytes())


def _v2_outputs(headers: Dict[str, str], body: bytes) -> Dict[str, np.ndarray]:
    n = int({k.lower(): v for k, v in headers.items()}["inference-header-content-length"])
    out, at = {}, n
    for o in json.loads(body[:n])["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(body[at:at + size], np.float32).reshape(o["shape"])
        at += size
    return out


V2_HEADERS, V2_BODY = _v2_binary()
#: protocol -> (path, headers, body, the outputs read back from a reply)
PROTOCOLS: Dict[str, Tuple[str, Dict[str, str], bytes, Callable[..., Dict[str, Any]]]] = {
    "eas": (f"/api/predict/{NAME}", {"Content-Type": "application/octet-stream"},
            protocol.encode_request({"a": A, "b": B}),
            lambda h, body: protocol.decode_response(body)),
    "tfserving": (f"/v1/models/{NAME}:predict", {"Content-Type": "application/json"},
                  json.dumps({"inputs": {"a": A.tolist(), "b": B.tolist()}}).encode(),
                  lambda h, body: json.loads(body)["outputs"]),
    "v2_binary": (f"/v2/models/{NAME}/infer", V2_HEADERS, V2_BODY, _v2_outputs),
}


def event(source: str, path: str, headers: Dict[str, str], body: bytes) -> Dict[str, Any]:
    """The sample event carrying the request: binary bodies base64, JSON as text (as API
    Gateway, ALB and function URLs pass them)."""
    ev = lambda_event(fixture(source + ".json"), "POST", path, headers, body)
    if headers.get("Content-Type") == "application/json":
        ev["body"], ev["isBase64Encoded"] = body.decode(), False
    return ev


class Deployed:
    """One function instance under the emulator, and the same handler in this process."""

    def __init__(self, kind: str, fn: Function, handler: Callable[..., Dict[str, Any]]) -> None:
        self.kind, self.fn, self.handler = kind, fn, handler

    def inits(self) -> List[str]:
        return READY.findall(self.fn.log())


@pytest.fixture(scope="module")
def zip_parts(models: Dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """The multi model converted for LiteRT, and the layer ``layers/build --platform aws
    --runtime litert`` builds (wheels for the target, as a user publishes it), laid out."""
    root = str(tmp_path_factory.mktemp("lambda-zip"))
    jobs = [[PYTHON, "-m", "tfserverless", "convert", models[NAME], os.path.join(root, "model")],
            [PYTHON, os.path.join(ROOT, "layers", "build"), "--platform", "aws", "--runtime",
             "litert", "--python", "3.11", "--out", root]]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda a: subprocess.run(a, capture_output=True, text=True,
                                                      timeout=900), jobs))
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    paths = zip_layout(root, os.path.join(root, "tfserverless-aws-litert-py3.11.zip"))
    return dict(paths, model=os.path.join(root, "model"), home=root)


@pytest.fixture(scope="module", params=["image", "zip"])
def deployed(request: Any, models: Dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Deployed]:
    """The function started and its first invoke answered (the init measured), then the
    rest of the module's invokes on the same instance."""
    kind = str(request.param)
    home = str(tmp_path_factory.mktemp(f"lambda-{kind}"))
    log = os.path.join(home, "function.log")
    parts = request.getfixturevalue("zip_parts") if kind == "zip" else {}
    model = parts["model"] if parts else models[NAME]
    # the in-process handler first: the emulator's clock starts with it
    service = make_service(model, SERVICE_TOKEN="", SERVICE_NAME=NAME)
    env = base_env(home, MODEL_PATH=model, SERVICE_NAME=NAME)
    fn = zip_function(parts, env, log) if parts else image_function(env, log)
    d = Deployed(kind, fn, aws_lambda.make_handler(service))
    try:
        path, headers, body, _ = PROTOCOLS["eas"]
        assert fn.invoke(event("apigw_v2_http", path, headers, body))["statusCode"] == 200
        hook = d.inits()
        print(f"\n{kind}: emulator start to first reply {fn.first_reply:.2f}s; "
              f"init hook (load + warm-up) {hook[0] if hook else '?'}s")
        yield d
    finally:
        fn.stop()
        service.holder.model.close()


def _comparable(reply: Dict[str, Any]) -> Dict[str, Any]:
    """A reply without its Server-Timing (durations differ between two calls)."""
    out = dict(reply)
    for key in ("headers", "multiValueHeaders"):
        if key in out:
            out[key] = {k: v for k, v in out[key].items() if k != "Server-Timing"}
    return out


def test_init_runs_once_in_the_init_hook_and_fits_lambdas_phase(deployed: Deployed) -> None:
    """The emulator sets AWS_LAMBDA_FUNCTION_NAME: our init hook loads and warms up at
    import, once, without spending its budget (INIT_LOAD_BUDGET, 9 s on Lambda)."""
    log = deployed.fn.log()
    assert len(deployed.inits()) == 1, log[-3000:]
    assert "init budget" not in log and "still loading" not in log, log[-3000:]
    assert log.index("Lambda init: model ready") < log.index("END RequestId"), log[-3000:]
    runtime = "LiteRT import" if deployed.kind == "zip" else "TensorFlow import"
    assert f"cold start: fetch+extract cached, {runtime}" in log, log[-3000:]


@pytest.mark.parametrize("proto", sorted(PROTOCOLS))
@pytest.mark.parametrize("source", EVENTS)
def test_each_event_and_protocol_through_the_runtime(deployed: Deployed, source: str,
                                                    proto: str) -> None:
    path, headers, body, outputs = PROTOCOLS[proto]
    ev = event(source, path, headers, body)
    reply = deployed.fn.invoke(ev)
    assert _comparable(reply) == _comparable(deployed.handler(json.loads(json.dumps(ev))))
    status, got_headers, got = unpack_lambda(reply)
    assert status == 200, got[:300]
    if source == "alb":
        assert reply["statusDescription"] == "200 OK"
    out = outputs(got_headers, got)
    np.testing.assert_allclose(np.asarray(out["sum"], np.float32), A + B)
    np.testing.assert_allclose(np.asarray(out["diff"], np.float32), A - B)


def _echo_strings(n: int) -> bytes:
    """TF Serving JSON for ``echo``: ``n`` one-quote strings (5 bytes each, 9 once escaped)."""
    inputs: Dict[str, Any] = {k: [[0]] for k in ("f32", "f64", "i8", "i16", "i32", "i64",
                                                 "u8", "u16")}
    inputs.update(b=[[True]], s=[['"'] * n])
    return json.dumps({"signature_name": "echo", "inputs": inputs},
                      separators=(",", ":")).encode()


def _expand(n: int) -> bytes:
    """V2 JSON for ``expand`` (y: x tiled 4x) with binary outputs: ``16 n`` bytes back."""
    return json.dumps({"inputs": [{"name": "x", "shape": [n], "datatype": "FP32",
                                   "data": [0.5] * n}],
                       "parameters": {"signature_name": "expand", "binary_data_output": True}}
                      ).encode()


@pytest.mark.parametrize("case", ["escaped past 6 MB", "over the body cap"])
def test_a_reply_over_6_mb_is_our_413_and_the_instance_lives(deployed: Deployed,
                                                            case: str) -> None:
    """Lambda would refuse the reply (502 Function.ResponseSizeTooLarge) and the runtime
    client would exit: the next request a cold start.  Ours is a 413 in one line."""
    if case == "escaped past 6 MB":  # 4.5 MB of JSON, under the 4.5 MiB body cap
        path = f"/v1/models/{NAME}:predict"
        body, headers = _echo_strings(880_000), {"Content-Type": "application/json"}
        # base64 (5.9 MB): as text the event itself would be over Lambda's 6 MB
        ev = lambda_event(fixture("apigw_v2_http.json"), "POST", path, headers, body)
    else:  # 4.8 MB of binary outputs
        path = f"/v2/models/{NAME}/infer"
        body, headers = _expand(300_000), {"Content-Type": "application/json"}
        ev = event("apigw_v2_http", path, headers, body)
    reply = deployed.fn.invoke(ev)
    status, _, got = unpack_lambda(reply)
    message = json.loads(got)["error"]
    assert status == 413, got[:300]
    assert "AWS Lambda's 6 MB synchronous payload" in message and "\n" not in message
    print(f"\n{deployed.kind}, {case}: {message}")
    path, headers, body, _ = PROTOCOLS["eas"]
    assert deployed.fn.invoke(event("alb", path, headers, body))["statusCode"] == 200
    assert len(deployed.inits()) == 1  # the same runtime process, not a restart
    assert "Runtime exited" not in deployed.fn.log()
