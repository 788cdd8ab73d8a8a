"""Fast lane: `render --protocol grpc`: what each platform gets for a service whose one port
speaks gRPC (Knative/KServe: port h2c, gRPC readiness probe, manifests valid against the
CRDs; Cloud Run: --use-http2; FC: s-grpc.yaml's custom container), the Lambda refusal in
one line, and HTTP's output left as it was."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict

import pytest

from tfserverless.errors import ConfigError
from tfserverless.platforms import grpc as grpc_door
from tfserverless.tools import deploy, render
from tfserverless.tools.modelsize import GIB, Disk

from ..conftest import ROOT
from .test_render_k8s import CONFIG, validator

SVC = deploy.parse_service(CONFIG, deploy.load_processors())  # 2 vCPUs, 4 running + 16 queued


def grpc(platform: str, svc: deploy.Deployment = SVC, **kw: Any) -> Dict[str, Any]:
    return render.render(svc, platform, protocol="grpc", **kw)


def container(platform: str, out: Dict[str, Any]) -> Dict[str, Any]:
    spec = out["manifest"]["spec"]
    (c,) = spec["template"]["spec"]["containers"] if platform == "knative" else \
        spec["predictor"]["containers"]
    return dict(c)


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_kubernetes_grpc_manifest_validates_against_the_crd(platform: str) -> None:
    m = grpc(platform)["manifest"]
    errors = sorted(validator(platform).iter_errors(m), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_kubernetes_grpc_port_is_h2c_probed_over_grpc(platform: str) -> None:
    c = container(platform, grpc(platform))
    assert c["ports"] == [{"name": "h2c", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PROTOCOL"] == "grpc"
    # readiness: grpc.health.v1.Health/Check on the port (SERVING once loaded and warmed up);
    # liveness: the process, as /healthz/live is over HTTP (Check says NOT_SERVING while loading)
    assert c["readinessProbe"] == {"grpc": {"port": 8080}, "periodSeconds": 2}
    assert c["livenessProbe"] == {"tcpSocket": {"port": 8080}, "periodSeconds": 10}
    assert "httpGet" not in json.dumps(c) and "/healthz" not in json.dumps(c)
    # the proxy's calls share one HTTP/2 connection, which one worker serves: 4 running + 16
    # queued, not the 2 workers' 40
    assert env["WORKERS"] == "1"
    spec = grpc(platform)["manifest"]["spec"]
    concurrency = (spec["template"]["spec"] if platform == "knative"
                   else spec["predictor"])["containerConcurrency"]
    assert concurrency == 20


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_kubernetes_http_manifest_is_as_it_was(platform: str) -> None:
    c = container(platform, render.render(SVC, platform))
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    assert "PROTOCOL" not in {e["name"] for e in c["env"]}
    assert render.render(SVC, platform) == render.render(SVC, platform, protocol="http")


def test_grpc_concurrency_is_at_most_the_streams_one_connection_may_open() -> None:
    assert deploy.GRPC_MAX_STREAMS == grpc_door.MAX_STREAMS
    eas_defaults = dict(CONFIG, metadata={"cpu": 4})  # 5 running + 64 queued per worker
    svc = deploy.parse_service(eas_defaults, deploy.load_processors())
    assert svc.concurrency == 4 * 69
    assert svc._replace(protocol="grpc").concurrency == 69  # one worker's share
    big = svc._replace(protocol="grpc", max_queue_size=1000)
    assert big.concurrency == grpc_door.MAX_STREAMS  # at most one connection's streams
    assert "--concurrency=69" in grpc("cloudrun", svc)["command"]
    assert grpc("fc", svc)["parameters"]["INSTANCE_CONCURRENCY"] == "69"


def test_grpc_with_the_model_size_still_one_worker() -> None:
    out = grpc("knative", disk=Disk(GIB // 10, GIB // 10 + 16 * 2**20, "--model-size"))
    assert out["workers"] == render.GRPC_WORKERS_LINE
    assert {e["name"]: e.get("value") for e in container("knative", out)["env"]}["WORKERS"] == "1"


def test_cloudrun_grpc_uses_http2_end_to_end() -> None:
    out = grpc("cloudrun")
    cmd = out["command"]
    assert " --use-http2 " in cmd and "--port=8080" in cmd
    assert re.search(r"--set-env-vars=\S*\bPROTOCOL=grpc\b", cmd)
    assert out["parameters"]["PROTOCOL"] == "grpc"
    # no probe flags today: Cloud Run's default startup probe (TCP) fits a gRPC port too
    assert "probe" not in cmd
    assert "--use-http2" not in render.render(SVC, "cloudrun")["command"]


def read_template(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_fc_grpc_deploys_the_cloud_run_image_as_a_custom_container() -> None:
    out = grpc("fc")
    p = out["parameters"]
    assert out["command"].endswith(" s deploy -t s-grpc.yaml")
    assert p["IMAGE"] == out["image"] == ("registry.<region>.aliyuncs.com/<namespace>/"
                                          "tfserverless:tensorflow_cpu_2.21-cloudrun")
    assert "LAYER_ARN" not in p and p["WORKERS"] == "1" and p["INSTANCE_CONCURRENCY"] == "20"
    template = read_template("s-grpc.yaml")
    for key in p:
        assert f"env('{key}'" in template, key
    yaml = pytest.importorskip("yaml")
    props = yaml.safe_load(template)["resources"]["model"]["props"]
    assert props["runtime"] == "custom-container"
    assert props["customContainerConfig"]["port"] == 8089  # FC's gRPC port
    env = props["environmentVariables"]
    assert env["PROTOCOL"] == "grpc" and env["PORT"] == "8089"
    assert [t["triggerType"] for t in props["triggers"]] == ["http"]
    assert "instanceLifecycleConfig" not in props  # its initializer is an HTTP call
    http = render.render(SVC, "fc")  # a TensorFlow processor over HTTP: its FC image
    assert http["command"].endswith(" s deploy -t s-image.yaml")
    assert http["parameters"]["IMAGE"].endswith("-fc")


def test_fc_grpc_refuses_a_gpu_in_one_line() -> None:
    gpu = deploy.parse_service(dict(CONFIG, processor="tensorflow_gpu_2.7",
                                    metadata=dict(CONFIG["metadata"], gpu=1)),
                               deploy.load_processors())
    with pytest.raises(ConfigError) as e:
        grpc("fc", gpu)
    assert "s-grpc.yaml" in e.value.message and "tensorflow_gpu_2.7-cloudrun" in e.value.message


def test_lambda_grpc_is_refused_in_one_line_naming_who_can() -> None:
    with pytest.raises(ConfigError) as e:
        grpc("aws")
    msg = e.value.message
    assert "\n" not in msg and "AWS Lambda has no gRPC path" in msg
    assert all(p in msg for p in ("cloudrun", "knative", "kserve"))
    with pytest.raises(ConfigError) as e:
        render.render(SVC, "knative", protocol="thrift")
    assert "expected one of http, grpc" in e.value.message
