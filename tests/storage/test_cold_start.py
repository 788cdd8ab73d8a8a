"""Cold start from object storage through a real server process and the EAS SDK."""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict

import numpy as np
import pytest
import requests

from tfserverless import protocol

from ..conftest import AWS_SECRET, OSS_SECRET, FileServer, MotoServer, eas_call, free_port
from . import archives

TOKEN = "tok-never-logged-77"
SECRETS = (AWS_SECRET, OSS_SECRET, TOKEN, "presigned-query-secret")


def sdk_predict(url: str) -> Dict[str, Any]:
    [res] = eas_call({"custom_url": url + "/", "token": TOKEN, "requests": [
        {"signature": "predict_images",
         "feeds": [{"name": "images", "shape": [1, 784], "dtype": 1, "values": [0.5] * 784}]}]})
    return res


def assert_no_secrets(*texts: str) -> None:
    for t in texts:
        for s in SECRETS:
            assert s not in t


@pytest.mark.parametrize("scheme,kind", [("s3", "tar.gz"), ("oss", "zip"), ("s3", "prefix"),
                                         ("http", "tgz")])
def test_serves_from_each_scheme(start_server: Any, moto: MotoServer, files: FileServer,
                                 models: Dict[str, str], tmp_path: Any, scheme: str,
                                 kind: str) -> None:
    src = models["tf1_mnist"]
    bucket = "m-" + uuid.uuid4().hex[:10]
    if scheme == "http":
        files.files["/mnist.tgz"] = archives.tar_of(src)
        url = files.url + "/mnist.tgz?X-Amz-Signature=presigned-query-secret"
    else:
        moto.client().create_bucket(Bucket=bucket)
        if kind == "prefix":
            for rel, data in archives.tree(src).items():
                moto.client().put_object(Bucket=bucket, Key="mnist/1/" + rel, Body=data)
            url = f"{scheme}://{bucket}/mnist/"
        else:
            data = archives.tar_of(src) if kind == "tar.gz" else archives.zip_of(src)
            moto.client().put_object(Bucket=bucket, Key=f"mnist.{kind}", Body=data)
            url = f"{scheme}://{bucket}/mnist.{kind}"
    env = dict(moto.env(), MODEL_PATH=url, MODEL_CACHE_DIR=str(tmp_path / "cache"),
               SERVICE_TOKEN=TOKEN, FETCH_PART_BYTES="64KiB", FETCH_CONNECTIONS="3")
    s = start_server(env)
    res = sdk_predict(s.url)
    assert res["ok"], res
    assert len(res["outputs"]["scores"]["values"]) == 10
    log = s.log()
    # the TensorFlow import ran while the model downloaded, and the line says what the fetch did
    assert "cold start: fetch+extract" in log and "TensorFlow import" in log
    assert "hidden behind the fetch" in log and "MB/s" in log and "parts retried" in log
    assert (" 3 connections" if kind == "prefix" else " connection") in log, log[-2000:]
    metrics = requests.get(s.url + "/metrics", headers={"Authorization": TOKEN}).text
    assert "tfserverless_fetch_connections{worker=" in metrics, metrics[-1500:]
    assert_no_secrets(log)


def test_missing_object_then_fixed_without_restart(start_server: Any, moto: MotoServer,
                                                    models: Dict[str, str], tmp_path: Any) -> None:
    bucket = "m-" + uuid.uuid4().hex[:10]
    moto.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/late.tar.gz"
    s = start_server(dict(moto.env(), MODEL_PATH=url, MODEL_CACHE_DIR=str(tmp_path / "c"),
                          SERVICE_TOKEN=TOKEN), wait_ready=False)
    health = s.wait_ready(status=503)
    deadline = time.monotonic() + 60
    while health["status"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.2)
        health = requests.get(s.url + "/healthz").json()
    assert set(health) == {"status"}  # without the token: no bucket, key or error
    health = requests.get(s.url + "/healthz", headers={"Authorization": TOKEN}).json()
    assert "NoSuchKey" in health["error"] and url in health["error"]
    r = requests.post(s.url + "/", data=b"\x0a\x00", headers={"Authorization": TOKEN})
    assert r.status_code == 503 and "NoSuchKey" in r.text and int(r.headers["Retry-After"]) >= 1
    moto.client().put_object(Bucket=bucket, Key="late.tar.gz",
                             Body=archives.tar_of(models["tf1_mnist"]))
    s.wait_ready(timeout=120)
    assert sdk_predict(s.url)["ok"]
    assert_no_secrets(s.log(), r.text, str(health))


def test_server_down_then_up(start_server: Any, models: Dict[str, str], tmp_path: Any) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/m.tgz"
    s = start_server({"MODEL_PATH": url, "MODEL_CACHE_DIR": str(tmp_path / "c"),
                      "SERVICE_TOKEN": TOKEN}, wait_ready=False)
    s.wait_ready(status=503)
    r = requests.get(s.url + "/", headers={"Authorization": TOKEN})
    assert r.status_code == 503
    files = FileServer(port)
    try:
        files.files["/m.tgz"] = archives.tar_of(models["tf1_mnist"])
        s.wait_ready(timeout=120)
        assert sdk_predict(s.url)["ok"]
    finally:
        files.stop()


def test_two_workers_one_download(start_server: Any, files: FileServer,
                                  models: Dict[str, str], tmp_path: Any) -> None:
    files.files["/m.tgz"] = archives.tar_of(models["tf1_mnist"])
    files.delay["/m.tgz"] = 0.02
    s = start_server({"MODEL_PATH": files.url + "/m.tgz", "MODEL_CACHE_DIR": str(tmp_path / "c"),
                      "WORKERS": "2", "THREADS": "4"}, wait_ready=False)
    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)})
    pids = set()
    deadline = time.monotonic() + 120
    while len(pids) < 2 and time.monotonic() < deadline:
        try:
            with requests.Session() as sess:  # a new connection may land on the other worker
                h = sess.get(s.url + "/healthz")
                if h.status_code == 200:
                    pids.add(h.json()["pid"])
                    assert sess.post(s.url + "/", data=body).status_code == 200
        except requests.ConnectionError:  # not listening yet
            pass
        time.sleep(0.05)
    assert len(pids) == 2, "both workers should have loaded the model"
    assert files.gets["/m.tgz"] == 1
    assert s.log().count("cold start: fetch+extract") == 2


def test_corrupt_archive_is_503_naming_it_over_http(start_server: Any, files: FileServer,
                                                    models: Dict[str, str], tmp_path: Any) -> None:
    data = archives.tar_of(models["tf1_mnist"])
    mid = len(data) // 2
    files.files["/m.tar.gz"] = data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:]
    s = start_server({"MODEL_PATH": files.url + "/m.tar.gz", "MODEL_CACHE_DIR": str(tmp_path / "c")},
                     wait_ready=False)
    s.wait_ready(status=503)
    deadline = time.monotonic() + 60
    while True:
        r = requests.post(s.url + "/", data=b"\x0a\x00")
        if "corrupt" in r.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 503 and "m.tar.gz: corrupt archive" in r.text, r.text
    assert not list((tmp_path / "c").rglob("v-*"))
    # the load's backoff retries (after 1 s, 2 s) ran: waited for in the log, not slept on
    while "model not loaded (attempt 3," not in s.log():
        assert time.monotonic() < deadline + 60, s.log()[-2000:]
        time.sleep(0.2)
    r = requests.post(s.url + "/", data=b"\x0a\x00")
    assert r.status_code == 503 and "refused before" in r.text, r.text
    assert files.gets["/m.tar.gz"] == 1
    assert "serving the cached copy" not in s.log()


def test_model_that_cannot_load_after_overlapped_fetch_is_one_503_line(
        start_server: Any, files: FileServer, models: Dict[str, str], tmp_path: Any) -> None:
    """A SavedModel whose graph is garbage, fetched in parts while TensorFlow imports in a
    thread: the load fails as one 503 line (on predictions and /healthz), never a 500."""
    src = tmp_path / "bad"
    for rel, data in archives.tree(models["tf1_mnist"]).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"\x08\xff not a MetaGraphDef" if rel == "saved_model.pb" else data)
    files.files["/bad.tar.gz"] = archives.tar_of(str(src))
    s = start_server({"MODEL_PATH": files.url + "/bad.tar.gz", "MODEL_CACHE_DIR": str(tmp_path / "c"),
                      "FETCH_PART_BYTES": "64KiB", "FETCH_CONNECTIONS": "4"}, wait_ready=False)
    s.wait_ready(status=503)
    deadline = time.monotonic() + 60
    while True:
        r = requests.post(s.url + "/", data=b"\x0a\x00")
        health = requests.get(s.url + "/healthz").json()
        if health.get("status") == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    r = requests.post(s.url + "/", data=b"\x0a\x00")
    assert r.status_code == 503 and "\n" not in r.text.strip(), r.text
    assert "saved_model.pb is not a SavedModel" in r.text, r.text
    assert int(r.headers["Retry-After"]) >= 1
    log = s.log()
    assert "Traceback" not in log, log[-3000:]
    assert files.gets["/bad.tar.gz"] >= 1
