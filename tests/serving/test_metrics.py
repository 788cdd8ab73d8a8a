"""/metrics: Prometheus text that prometheus_client parses, counters equal to what was sent,
summed over every gunicorn worker (real forks, a real 2-worker server), behind SERVICE_TOKEN."""

from __future__ import annotations

import os
import time
from typing import Dict, Tuple

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tfserverless import protocol
from tfserverless.serving.metrics import Metrics

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]
COUNT = ":tensorflow:serving:request_count_total"


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_rows_of_forked_workers_add_up_and_survive_their_exit() -> None:
    m = Metrics(max_workers=8)
    m.request("eas", 200, 0.001)  # the parent is a worker too
    pids = []
    for i in range(3):
        pid = os.fork()
        if pid == 0:  # a worker: its own row, plain writes
            for _ in range(10 + i):
                m.request("eas", 200, 0.002)
            m.request("eas", 450, 0.0001)
            m.runtime(16, 0.004)
            m.gauges(running=1, waiting=2, shed={450: 1})
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    got = parse(m.render().decode())
    assert got[(COUNT, (("protocol", "eas"), ("status", "200")))] == 1 + 10 + 11 + 12
    assert got[(COUNT, (("protocol", "eas"), ("status", "450")))] == 3
    assert got[("tfserverless_shed_total", (("status", "450"),))] == 3
    assert got[("tfserverless_queue_depth", ())] == 0  # gauges of exited workers are dropped
    assert got[("tfserverless_workers", ())] == 1
    hist = ":tensorflow:serving:batching_session:processed_batch_size"
    assert got[(hist + "_bucket", (("le", "16"),))] == 3
    assert got[(hist + "_bucket", (("le", "8"),))] == 0
    assert got[(hist + "_count", ())] == 3 and got[(hist + "_sum", ())] == 48
    lat = ":tensorflow:serving:request_latency"
    assert got[(lat + "_count", ())] == 37
    assert got[(lat + "_bucket", (("le", "+Inf"),))] == 37
    # a new worker takes over a dead one's row and keeps its counts
    pid = os.fork()
    if pid == 0:
        m.request("eas", 200, 0.001)
        os._exit(0)
    os.waitpid(pid, 0)
    assert parse(m.render().decode())[(COUNT, (("protocol", "eas"), ("status", "200")))] == 35


def test_more_workers_than_rows_reuse_dead_rows() -> None:
    m = Metrics(max_workers=2)
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            m.request("eas", 200, 0.001)
            os._exit(0)
        os.waitpid(pid, 0)
    assert parse(m.render().decode())[(COUNT, (("protocol", "eas"), ("status", "200")))] == 4


@pytest.mark.slow
def test_every_scrape_of_a_two_worker_server_sees_all_requests(start_server, sample_model: str) -> None:  # type: ignore[no-untyped-def]
    s = start_server({"MODEL_PATH": sample_model, "WORKERS": "2"})
    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)},
                                signature_name="predict_images")
    deadline = time.monotonic() + 60
    while parse(requests.get(s.url + "/metrics", timeout=10).text)[("tfserverless_workers", ())] < 2:
        assert time.monotonic() < deadline, "the second worker never loaded"
        requests.get(s.url + "/healthz", timeout=10)
        time.sleep(0.2)
    sent = 0
    for _ in range(40):  # new connections: gunicorn spreads them over both workers
        assert requests.post(s.url + "/", data=body, timeout=30).status_code == 200
        sent += 1
    assert requests.post(s.url + "/", data=b"{}", timeout=30).status_code == 400
    for _ in range(10):  # whichever worker answers, the sums are the instance's
        got = parse(requests.get(s.url + "/metrics", timeout=10).text)
        assert got[(COUNT, (("protocol", "eas"), ("status", "200")))] == sent
        assert got[(COUNT, (("protocol", "eas"), ("status", "400")))] == 1
        assert got[("tfserverless_workers", ())] == 2
        assert got[(":tensorflow:cc:saved_model:load_attempt_count_total",
                    (("status", "success"),))] == 2
        phases = {dict(k[1])["phase"] for k in got if k[0] == "tfserverless_cold_start_seconds"}
        assert phases >= {"tf_import", "load", "warm_up"}


@pytest.mark.slow
def test_shed_requests_are_counted_and_metrics_need_the_token(start_server, sample_model: str) -> None:  # type: ignore[no-untyped-def]
    s = start_server({"MODEL_PATH": sample_model, "RPC_RATE_LIMIT": "1", "SERVICE_TOKEN": "s3cret"})
    assert requests.get(s.url + "/metrics", timeout=10).status_code == 401
    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)},
                                signature_name="predict_images")
    auth = {"Authorization": "s3cret"}
    codes = [requests.post(s.url + "/", data=body, headers=auth, timeout=30).status_code
             for _ in range(5)]
    assert codes.count(429) >= 3
    r = requests.get(s.url + "/metrics", headers=auth, timeout=10)
    assert r.status_code == 200 and "s3cret" not in r.text
    got = parse(r.text)
    assert got[("tfserverless_shed_total", (("status", "429"),))] == codes.count(429)
    assert got[(COUNT, (("protocol", "eas"), ("status", "429")))] == codes.count(429)
    assert got[(COUNT, (("protocol", "eas"), ("status", "200")))] == codes.count(200)


@pytest.mark.slow
def test_tf_servings_metrics_path_answers_what_metrics_answers(start_server, sample_model: str) -> None:  # type: ignore[no-untyped-def]
    """``/monitoring/prometheus/metrics`` (where Prometheus configs written for TF Serving
    scrape): the same text as ``/metrics``, the same token rule, and not counted either."""
    s = start_server({"MODEL_PATH": sample_model, "SERVICE_TOKEN": "s3cret"})
    tfs = s.url + "/monitoring/prometheus/metrics"
    r = requests.get(tfs, timeout=10)
    assert r.status_code == 401 and "Authorization" in r.text
    auth = {"Authorization": "s3cret"}
    body = protocol.encode_request({"images": np.zeros((1, 784), np.float32)},
                                   signature_name="predict_images")
    for _ in range(3):
        assert requests.post(s.url + "/", data=body, headers=auth, timeout=30).status_code == 200
    for _ in range(2):  # scrapes, by either path, count nothing
        got = [requests.get(url, headers=auth, timeout=10) for url in (tfs, s.url + "/metrics")]
        assert [g.status_code for g in got] == [200, 200]
        assert got[0].headers["Content-Type"] == got[1].headers["Content-Type"]
        assert got[0].headers["Content-Type"].startswith("text/plain") and "# TYPE" in got[0].text
        counts = [{k: v for k, v in parse(g.text).items() if k[0] == COUNT} for g in got]
        assert counts[0] == counts[1] == {(COUNT, (("protocol", "eas"), ("status", "200"))): 3}
    assert requests.post(tfs, headers=auth, timeout=10).status_code == 405


def test_inference_totals_count_predictions_only() -> None:
    """What V2's statistics extension reports: predictions by outcome (reads are not), the
    time queued and in the model, rows and calls; the grpc protocols have their own label."""
    m = Metrics(max_workers=2)
    m.request("v2-grpc", 200, 0.002, infer=True)
    m.request("v2-grpc", 200, 0.004, infer=True)
    m.request("tfserving-grpc", 400, 0.001, infer=True)
    m.request("v2", 200, 0.5)  # metadata: not an inference
    m.runtime(3, 0.001)
    m.queued(0.0005)
    t = m.inference_totals()
    assert (t["success"], t["fail"]) == (2, 1)
    assert t["success_ns"] == pytest.approx(6e6) and t["fail_ns"] == pytest.approx(1e6)
    assert (t["execution_count"], t["inference_count"]) == (1, 3)
    assert t["compute_ns"] == pytest.approx(1e6) and t["queue_ns"] == pytest.approx(5e5)
    assert t["last_inference"] > 1.7e12
    text = m.render().decode()
    assert 'protocol="v2-grpc",status="200"} 2' in text
    assert 'protocol="tfserving-grpc",status="400"} 1' in text
