"""Hostile input, round two, end to end: each defect's reproduction against a real server (the
bare app and functions-framework's ASGI and Flask targets), answered with one short line of
400, never a 500 (which logs a traceback, and which the EAS SDK retries)."""

from __future__ import annotations

import json
import time
from typing import Any, Dict

import numpy as np
import pytest
import requests

from ..conftest import Server, server_per_target

TOKEN = "hostile-token-3141"
AUTH = {"Authorization": TOKEN}
ROW = np.random.RandomState(7).rand(784).astype(np.float32).tolist()


server = server_per_target(lambda models: {"MODEL_PATH": models["tf1_mnist"],
                                           "SERVICE_TOKEN": TOKEN, "SERVICE_NAME": "mnist"})


def v1(server: Server) -> str:
    return f"{server.url}/v1/models/mnist:predict"


def v2(server: Server) -> str:
    return f"{server.url}/v2/models/mnist/infer"


def refused(r: requests.Response, *words: str) -> str:
    """The reply is a 400 of one short line naming what was wrong."""
    assert r.status_code == 400, (r.status_code, r.text[:500])
    error = r.json()["error"]
    assert "\n" not in error and all(w in error for w in words), error
    return str(error)


def bytes_head(shape: Any) -> bytes:
    return json.dumps({"parameters": {"signature_name": "serving_default"},
                       "inputs": [{"name": "inputs", "shape": shape, "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 0}}]}).encode()


# --- A: V2 BYTES allocated from the declared shape --------------------------------------------


def test_v2_bytes_shape_is_checked_against_the_data_before_allocating(server: Server) -> None:
    """A ~150-byte body declaring 2^27 BYTES elements in 0 bytes took 2.7 s and +1 GB before its
    400; 2^36 was a 500 (MemoryError), [2^39, 2^39] a 500 (ValueError)."""
    for shape in ([1 << 36], [1 << 39, 1 << 39]):
        head = bytes_head(shape)
        r = requests.post(v2(server), data=head, headers={
            **AUTH, "Inference-Header-Content-Length": str(len(head))})
        refused(r, "input 'inputs'")
    head = bytes_head([1 << 27])
    start = time.monotonic()
    r = requests.post(v2(server), data=head, headers={
        **AUTH, "Inference-Header-Content-Length": str(len(head))})
    refused(r, "needs at least 536870912")
    assert time.monotonic() - start < 1.0


# --- B: client mistakes that were 500s ------------------------------------------------------


def images(data: Any = None, **extra: Any) -> Dict[str, Any]:
    return dict({"name": "images", "shape": [1, 784], "datatype": "FP32",
                 "data": ROW if data is None else data}, **extra)


def predict_images(*inputs: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    return dict({"parameters": {"signature_name": "predict_images"}, "inputs": list(inputs)},
                **extra)


def test_v2_datatype_that_is_no_string_is_400(server: Server) -> None:
    r = requests.post(v2(server), headers=AUTH,
                      json=predict_images(images(datatype=["FP64"])))
    refused(r, "input 'images' has datatype", "expected one of FP32")


def test_v2_id_with_a_lone_surrogate_is_400(server: Server) -> None:
    """The NaN sent the body to the standard library's parser, which reads ``\\ud800``: the
    model ran, then the reply could not be encoded (a 500)."""
    body = json.dumps(predict_images(images(["NaN", *ROW[1:]]), id="@ID@")).encode()
    body = body.replace(b'"NaN"', b"NaN").replace(b"@ID@", b"\\ud800")
    refused(requests.post(v2(server), headers=AUTH, data=body), "lone surrogate")


# --- C: acceptance that depended on the parser ------------------------------------------------


def test_json_rule_does_not_depend_on_a_nan_elsewhere(server: Server) -> None:
    """A BOM-prefixed body was a 400 unless it held the bytes NaN (anywhere, even in a string);
    1e999 was a 400 without them and inf fed to the model with them."""
    rows = json.dumps({"signature_name": "predict_images", "instances": [ROW, ROW]})
    for extra in ("", ', "note": "NaN"'):
        body = rows[:-1] + extra + "}"
        r = requests.post(v1(server), headers=AUTH, data=b"\xef\xbb\xbf" + body.encode())
        assert r.status_code == 200, r.text
        assert np.array(r.json()["predictions"]).shape == (2, 10)
        overflow = body.replace(json.dumps(ROW[0]), "1e999", 1).encode()
        refused(requests.post(v1(server), headers=AUTH, data=overflow), "1e999")
    nan = json.dumps(predict_images(images(["NaN", *ROW[1:]]))).replace('"NaN"', "NaN")
    r = requests.post(v2(server), headers=AUTH, data=nan.replace("FP32", "FP32\\ud800", 1))
    refused(r, "lone surrogate")


# --- D: smaller ones -------------------------------------------------------------------------


def test_errors_quote_a_client_value_shortly(server: Server) -> None:
    """A 1 MB datatype came back whole in the error (4.5-7 MB error bodies were seen)."""
    r = requests.post(v2(server), headers=AUTH, json=predict_images(images(datatype="X" * 1_000_000)))
    refused(r, "has datatype 'XXXX", "...; expected one of FP32")
    assert len(r.content) < 1000


def test_true_among_numbers_is_400(server: Server) -> None:
    """[true, 0.5, ...] reached the model as [1.0, 0.5, ...] while [true, false, ...] was refused."""
    r = requests.post(v1(server), headers=AUTH, json={"signature_name": "predict_images",
                                                      "instances": [[True, *ROW[1:]]]})
    refused(r, "input 'images' holds true/false values")


def test_v2_input_parameters_that_are_no_object_are_400(server: Server) -> None:
    """A top-level "parameters": [1] was a 400; an input's was silently ignored."""
    r = requests.post(v2(server), headers=AUTH, json=predict_images(images(parameters=[1])))
    refused(r, "input 'images' \"parameters\" must be a JSON object")


@pytest.mark.parametrize("value", ["\u00b9\u00b2", "1" * 5000])
def test_v2_header_length_that_is_no_ascii_number_is_400(server: Server, value: str) -> None:
    """Superscript digits pass str.isdigit() and fail int(): a 500; so did 5000 digits
    (int()'s 4300-digit limit)."""
    head = json.dumps(predict_images(images())).encode()
    r = requests.post(v2(server), data=head, headers={**AUTH, "Inference-Header-Content-Length": value})
    refused(r, "Inference-Header-Content-Length", "not a length")
