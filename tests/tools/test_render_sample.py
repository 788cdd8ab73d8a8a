"""Fast lane: ``samples/service.json`` renders for every platform, and what each printed
deploy command references is printed too: every parameter has a value, and every placeholder
and ``$VARIABLE`` it leaves is named on a ``# you supply:`` line (``you_supply`` in --json).
The token never appears in any output; a model on another cloud's store names the
credentials the function needs."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Tuple

import pytest

from tfserverless.__main__ import main
from tfserverless.tools import deploy, render

from ..conftest import ROOT

SAMPLE = os.path.join(ROOT, "samples", "service.json")
#: every field parse_service reads, by section (the rest of KNOWN_* is accepted and ignored)
READ = {"": {"name", "model_path", "processor", "warm_up_data_path", "token", "metadata",
             "autoscaler"},
        "metadata": {"instance", "cpu", "memory", "gpu", "rpc"},
        "metadata.rpc": {"keepalive", "worker_threads", "max_queue_size", "rate_limit",
                         "batching", "max_batch_size", "max_batch_timeout"},
        "autoscaler": {"min", "max"}}
PLACEHOLDER = re.compile(r"<[^<>]+>")
VARIABLE = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")


def sample(**changes: Any) -> Dict[str, Any]:
    with open(SAMPLE, encoding="utf-8") as f:
        return dict(json.load(f), **changes)


def run(platform: str, config: Dict[str, Any], tmp_path: Any, capsys: Any,
        *flags: str) -> Tuple[str, str]:
    path = tmp_path / "service.json"
    path.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["render", "--config", str(path), "--platform", platform, *flags]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def rendered(platform: str, config: Dict[str, Any], tmp_path: Any, capsys: Any) -> Dict[str, Any]:
    return dict(json.loads(run(platform, config, tmp_path, capsys, "--json")[0]))


def test_the_sample_sets_every_field_the_project_reads_and_nothing_it_ignores(capsys: Any) -> None:
    data = sample()
    sections = {"": data, "metadata": data["metadata"], "metadata.rpc": data["metadata"]["rpc"],
                "autoscaler": data["autoscaler"]}
    assert {k: set(v) for k, v in sections.items()} == READ
    assert READ[""] <= deploy.KNOWN_TOP and READ["metadata"] <= deploy.KNOWN_METADATA
    assert READ["metadata.rpc"] <= deploy.KNOWN_RPC
    svc = deploy.parse_service(data, deploy.load_processors())
    assert svc.warnings == () and svc.model_path.startswith("s3://")
    current = deploy.load_processors()["current"]
    assert svc.processor == f"tensorflow_cpu_{current}"


@pytest.mark.parametrize("platform", render.PLATFORMS)
def test_the_sample_renders_and_every_reference_of_the_command_is_printed(
        platform: str, tmp_path: Any, capsys: Any) -> None:
    out = rendered(platform, sample(), tmp_path, capsys)
    supply = out["you_supply"]
    assert supply and all("\n" not in line for line in supply)
    named = " ".join(supply)
    text = out["command"] + json.dumps(out.get("manifest", {})) + json.dumps(out["parameters"])
    for placeholder in set(PLACEHOLDER.findall(text)):
        assert placeholder in named, (placeholder, supply)
    for variable in set(VARIABLE.findall(out["command"])):
        assert variable in named, (variable, supply)
    assert not [k for k, v in out["parameters"].items() if v is None]
    stdout, stderr = run(platform, sample(), tmp_path, capsys)
    said = stdout if "manifest" not in out else stderr
    prefix = "# you supply: " if "manifest" not in out else "tfserverless: you supply: "
    assert [line[len(prefix):] for line in said.splitlines() if line.startswith(prefix)] == supply
    if "manifest" in out:  # stdout stays the manifest kubectl reads; the commands go beside it
        assert json.loads(stdout) == out["manifest"]
        assert all(f"tfserverless: run: {line}" in stderr for line in out["command"].splitlines())


def test_aws_grants_the_model_bucket_and_reads_the_token_from_the_environment(
        tmp_path: Any, capsys: Any) -> None:
    out = rendered("aws", sample(), tmp_path, capsys)
    assert out["parameters"]["ModelBucket"] == "my-bucket"
    assert " ModelBucket=my-bucket " in out["command"]
    assert out["command"].endswith(' ServiceToken="$SERVICE_TOKEN"')
    http = rendered("aws", sample(model_path="https://example.com/m.tar.gz", warm_up_data_path="",
                                  token=""), tmp_path, capsys)
    assert "ModelBucket" not in http["parameters"] and "SERVICE_TOKEN" not in http["command"]
    assert not any("SERVICE_TOKEN" in line for line in http["you_supply"])
    other = rendered("aws", sample(warm_up_data_path="s3://elsewhere/w.bin"), tmp_path, capsys)
    assert any("S3 bucket 'elsewhere'" in w for w in other["warnings"])


def test_cloudrun_and_kubernetes_carry_the_token_as_a_secret(tmp_path: Any, capsys: Any) -> None:
    run_ = rendered("cloudrun", sample(), tmp_path, capsys)["command"].splitlines()
    assert run_[0] == 'printf %s "$SERVICE_TOKEN" | gcloud secrets create mnist-token --data-file=-'
    assert "roles/secretmanager.secretAccessor" in run_[1]
    assert "--set-secrets=SERVICE_TOKEN=mnist-token:latest" in run_[-1]
    for platform in ("knative", "kserve"):
        out = rendered(platform, sample(), tmp_path, capsys)
        secret, apply = out["command"].splitlines()
        assert secret == ('kubectl create secret generic mnist-token '
                          '--from-literal=token="$SERVICE_TOKEN"')
        assert apply == "kubectl apply -f <this manifest>"
        spec = out["manifest"]["spec"]
        pod = spec["template"]["spec"] if platform == "knative" else spec["predictor"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mnist-token",
                                                                     "key": "token"}


@pytest.mark.parametrize("platform", render.PLATFORMS)
def test_the_token_is_never_printed(platform: str, tmp_path: Any, capsys: Any) -> None:
    config = sample(token="tok-secret-123")
    for flags in ((), ("--json",)):
        stdout, stderr = run(platform, config, tmp_path, capsys, *flags)
        assert "tok-secret-123" not in stdout + stderr


OSS = ("OSS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")


@pytest.mark.parametrize("platform", ["aws", "cloudrun", "knative", "kserve", "sagemaker"])
def test_an_oss_model_elsewhere_names_the_credentials_and_how_to_pass_them(
        platform: str, tmp_path: Any, capsys: Any) -> None:
    out = rendered(platform, sample(model_path="oss://my-bucket/mnist.tar.gz",
                                    warm_up_data_path=""), tmp_path, capsys)
    (line,) = [s for s in out["you_supply"] if s.startswith("oss:// credentials")]
    assert all(name in line for name in OSS)


def test_credentials_are_asked_for_only_off_the_platforms_own_store(
        tmp_path: Any, capsys: Any) -> None:
    def asked(platform: str, model: str) -> List[str]:
        out = rendered(platform, sample(model_path=model, warm_up_data_path=""), tmp_path, capsys)
        return [s for s in out["you_supply"] if s.startswith(model.split("/")[0] + "// credentials")]

    assert asked("fc", "oss://b/m.tar.gz") == []  # FC's role reads OSS
    assert asked("cloudrun", "gs://b/m.tar.gz") == []  # the service account reads GCS
    assert asked("aws", "s3://b/m.tar.gz") == [] and asked("sagemaker", "s3://b/m.tar.gz") == []
    for platform in ("aws", "fc"):
        (line,) = asked(platform, "gs://b/m.tar.gz")
        assert "GOOGLE_APPLICATION_CREDENTIALS" in line
    (line,) = asked("fc", "s3://b/m.tar.gz")
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line


def test_fc_prints_the_image_layer_and_role_and_how_to_get_them(tmp_path: Any, capsys: Any) -> None:
    """A TensorFlow processor runs its FC image as a custom container (s-image.yaml: no layer
    of FC's Python runtime holds TensorFlow); litert_cpu runs on that runtime with its layer."""
    out = rendered("fc", sample(), tmp_path, capsys)
    p, steps = out["parameters"], out["command"].splitlines()
    assert p["IMAGE"] == ("registry.<region>.aliyuncs.com/<namespace>/"
                          "tfserverless:tensorflow_cpu_2.21-fc") and "LAYER_ARN" not in p
    assert p["ROLE_ARN"] == "acs:ram::<account-id>:role/<role>" and p["REGION"] == "<region>"
    assert "IMAGE=" in steps[0] and "ROLE_ARN=" in steps[0]
    assert steps[0].endswith("s deploy -t s-image.yaml") and 'SERVICE_TOKEN="$SERVICE_TOKEN"' in steps[0]
    assert any(s.startswith("image: packaging/build --processor tensorflow_cpu_2.21 --flavour fc")
               for s in out["you_supply"])
    assert any(s.startswith("ROLE_ARN:") for s in out["you_supply"])
    with open(os.path.join(ROOT, "s-image.yaml"), encoding="utf-8") as f:
        template = f.read()
    for key in p:
        assert f"env('{key}'" in template, key
    lite = rendered("fc", sample(processor="litert_cpu"), tmp_path, capsys)
    assert lite["parameters"]["LAYER_ARN"] == (
        "acs:fc:<region>:<account-id>:layers/tfserverless-litert/versions/<version>")
    assert any(s.startswith("LAYER_ARN:") for s in lite["you_supply"])
    assert lite["command"].splitlines()[-1].endswith("s deploy -t s.yaml")
    assert lite["command"].startswith("layers/build --platform fc --runtime litert --python 3.10\n")
    assert "build/layers/tfserverless-fc-litert-py3.10.zip" in lite["command"]
