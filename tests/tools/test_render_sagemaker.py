"""`render --platform sagemaker`: EAS's config as sagemaker.yaml's parameters (memory steps,
concurrency, where the model comes from, names by SageMaker's rule), the refusals in one line,
the warnings, the template in step with the renderer, and cfn-lint passing it (and failing a
broken copy: slow, a subprocess each)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from typing import Any, Dict, List

import pytest

from tfserverless.__main__ import main
from tfserverless.errors import ConfigError
from tfserverless.tools import deploy, render, render_sagemaker
from tfserverless.tools.modelsize import GIB, Disk

from ..conftest import BIN, ROOT
from .test_render_k8s import CONFIG  # 2 instances, autoscaler 1..4, 2 vCPUs, 4 + 16 a worker

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")
TEMPLATE = os.path.join(ROOT, "sagemaker.yaml")


def svc(**changes: Any) -> deploy.Deployment:
    base: Dict[str, Any] = CONFIG
    meta = dict(base["metadata"], **changes.pop("metadata", {}))
    return deploy.parse_service(dict(base, metadata=meta, **changes), deploy.load_processors())


def params(service: deploy.Deployment) -> Dict[str, str]:
    return dict(render.render(service, "sagemaker")["parameters"])


def refusal(service: deploy.Deployment, **kw: Any) -> str:
    with pytest.raises(ConfigError) as e:
        render.render(service, "sagemaker", **kw)
    assert "\n" not in e.value.message
    return e.value.message


def template() -> str:
    with open(TEMPLATE, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("memory,size", [(128, 1024), (1024, 1024), (1025, 2048), (4000, 4096),
                                         (5121, 6144), (6144, 6144)])
def test_memory_is_rounded_up_to_serverless_1gb_steps(memory: int, size: int) -> None:
    assert params(svc(metadata={"memory": memory}))["MemorySizeInMB"] == str(size)


def test_max_concurrency_is_what_the_eas_service_admits_at_once_at_most_200() -> None:
    p = params(svc())  # autoscaler.max 4 x (2 workers x (4 running + 16 queued))
    assert (p["MaxConcurrency"], p["ProvisionedConcurrency"]) == ("160", "1")
    plain = svc(autoscaler=None, metadata={"cpu": 1})  # 2 instances x 20, both kept running
    assert (params(plain)["MaxConcurrency"], params(plain)["ProvisionedConcurrency"]) == ("40", "2")
    eas_defaults = deploy.parse_service({"name": "m", "model_path": "oss://b/m/"},
                                        deploy.load_processors())
    assert params(eas_defaults)["MaxConcurrency"] == "69"  # 5 running + 64 queued
    big = svc(metadata={"rpc": {"max_queue_size": 1000}})
    assert params(big)["MaxConcurrency"] == "200"  # serverless's most
    warm = svc(autoscaler={"min": 300, "max": 400})
    assert (params(warm)["MaxConcurrency"], params(warm)["ProvisionedConcurrency"]) == ("200", "200")
    assert params(svc(autoscaler={"min": 0, "max": 3}))["ProvisionedConcurrency"] == "0"


@pytest.mark.parametrize("path,data_url,model_path,bucket", [
    ("s3://models/resnet/model.tar.gz", "s3://models/resnet/model.tar.gz", "", "models"),
    ("s3://models/resnet.TGZ", "s3://models/resnet.TGZ", "", "models"),
    ("s3://models/resnet/", "", "s3://models/resnet/", "models"),  # a prefix: the server's fetch
    ("s3://models/resnet.zip", "", "s3://models/resnet.zip", "models"),  # SageMaker unpacks tar.gz only
    ("oss://bucket/models/model.tar.gz", "", "oss://bucket/models/model.tar.gz", ""),
    ("https://example.com/m.tar.gz", "", "https://example.com/m.tar.gz", ""),
    ("gs://b/m/", "", "gs://b/m/", ""),
])
def test_an_s3_archive_is_model_data_anything_else_model_path(path: str, data_url: str,
                                                             model_path: str, bucket: str) -> None:
    p = params(svc(model_path=path))
    assert (p["ModelDataUrl"], p["ModelPath"], p["ModelBucket"]) == (data_url, model_path, bucket)


@pytest.mark.parametrize("name", ["tf_serving.test_1", "tf_serving_test", "x" * 80, "_model_",
                                  "1model", "a__b--c", "模型", "-", "a" * 62 + "_b"])
def test_names_follow_sagemaker_and_stack_rules(name: str) -> None:
    out = render.platform_name(name, "sagemaker")
    assert SAGEMAKER_NAME.fullmatch(out) and STACK_NAME.fullmatch(out), out
    assert render.platform_name("tf_serving.test_1", "sagemaker") == "tf-serving-test-1"


def test_the_command_passes_every_parameter_and_no_token() -> None:
    out = render.render(svc(), "sagemaker")
    assert out["name"] == "tf-serving-test" and out["warnings"] == [render_sagemaker.TOKEN_LINE]
    assert out["image"] == ("<account>.dkr.ecr.<region>.amazonaws.com/"
                            "tfserverless:tensorflow_cpu_2.21-cloudrun")
    head = ("aws cloudformation deploy --template-file sagemaker.yaml --stack-name "
            "tf-serving-test --capabilities CAPABILITY_IAM --parameter-overrides ")
    assert out["command"].startswith(head)
    pairs = dict(kv.split("=", 1) for kv in shlex.split(out["command"][len(head):]))
    # empty ones too: `aws cloudformation deploy` would keep a stack's previous value
    # the token cannot reach the container: SageMaker passes on no Authorization header
    assert pairs == dict(out["parameters"], ServiceToken="")
    assert pairs["RpcWorkerThreads"] == "4" and pairs["RpcMaxQueueSize"] == "16"
    assert pairs["Workers"] == "" and pairs["RpcBatching"] == ""  # serve's own choice
    open_ = render.render(svc(token=""), "sagemaker")
    assert open_["command"] == out["command"] and open_["warnings"] == []


def test_workers_are_set_only_when_the_model_size_is_known() -> None:
    out = render.render(svc(), "sagemaker", Disk(GIB, GIB + (16 << 20), "--model-size"))
    assert out["parameters"]["Workers"] == "1"  # one worker for a large model
    assert out["parameters"]["MaxConcurrency"] == "80"  # 4 instances x one worker's 20


def test_litert_runs_its_cloudrun_image() -> None:
    assert params(svc(processor="litert_cpu"))["ImageUri"].endswith("tfserverless:litert_cpu-cloudrun")


@pytest.mark.parametrize("service,starts", [
    (svc(processor="tensorflow_gpu_2.21", metadata={"gpu": 1}), "metadata.gpu=1: SageMaker "
     "serverless inference has no GPUs; expected --platform cloudrun, knative or kserve (or a "
     "SageMaker real-time endpoint)"),
    (svc(processor="tensorflow_gpu_2.21"), "processor tensorflow_gpu_2.21: SageMaker serverless "
     "inference has no GPUs"),
    (svc(metadata={"memory": 6145}), "metadata.memory=6145: SageMaker serverless inference gives "
     "at most 6144 MB; expected metadata.memory <= 6144, or --platform cloudrun, knative or kserve"),
])
def test_what_serverless_cannot_hold_is_refused_in_one_line(service: deploy.Deployment,
                                                            starts: str) -> None:
    assert refusal(service).startswith(starts)


def test_grpc_and_a_model_past_5gb_of_disk_are_refused() -> None:
    line = refusal(svc(), protocol="grpc")
    assert line.startswith("--protocol grpc: SageMaker's InvokeEndpoint carries HTTP")
    assert "expected --platform cloudrun, knative or kserve" in line
    fits = Disk(5 * GIB - (16 << 20), 5 * GIB, "--model-size")
    assert render.render(svc(), "sagemaker", fits)["disk"]["need_mib"] == 5120
    line = refusal(svc(), disk=fits._replace(need_bytes=5 * GIB + 1))
    assert "needs 5121 MiB of disk" in line and "ephemeral storage is 5120 MB" in line
    assert "use --platform cloudrun, knative or kserve, or a smaller model" in line


def test_keepalive_past_60s_and_a_warm_up_file_the_role_cannot_read_are_warnings() -> None:
    out = render.render(svc(token="", metadata={"rpc": {"keepalive": 90000}}), "sagemaker")
    (line,) = out["warnings"]
    assert line.startswith("metadata.rpc.keepalive=90000 ms: SageMaker ends an invocation at 60 s")
    assert out["parameters"]["RpcKeepalive"] == "60000"
    assert render.render(svc(token="", metadata={"rpc": {"keepalive": 60000}}),
                         "sagemaker")["warnings"] == []
    model = "s3://models/m.tar.gz"
    (line,) = render.render(svc(token="", model_path=model, warm_up_data_path="s3://other/w.bin"),
                            "sagemaker")["warnings"]
    assert "S3 bucket 'other'; the role reads only ModelBucket (models)" in line
    beside = svc(token="", model_path=model, warm_up_data_path="s3://models/w.bin")
    assert render.render(beside, "sagemaker")["warnings"] == []


def test_the_template_takes_what_render_gives_and_sets_each_variable() -> None:
    text = template()
    section = text[text.index("\nParameters:\n"):text.index("\nRules:\n")]
    declared = set(re.findall(r"^  (\w+):\n    Type:", section, re.M))
    assert set(params(svc())) | {"ServiceToken"} == declared
    env = dict(re.findall(r"^          ([A-Z_]+): !Ref (\w+)$", text, re.M))
    assert env == dict(render_sagemaker.ENV_PARAMS, SERVICE_TOKEN="ServiceToken")
    assert f'MAX_BODY_BYTES: "{render_sagemaker.PAYLOAD_BYTES}"' in text
    assert "TFSERVERLESS_PLATFORM: sagemaker\n" in text  # MODEL_PATH's default /opt/ml/model
    lo, hi = render_sagemaker.SERVERLESS_MEMORY_MB
    assert f"AllowedValues: {list(range(lo, hi + 1, 1024))}" in text
    assert "    MaxValue: 200\n" in text and render_sagemaker.SERVERLESS_MAX_CONCURRENCY == 200
    assert f'AllowedPattern: "^{SAGEMAKER_NAME.pattern}$"' in text


def cli(tmp_path: Any, capsys: Any, config: Dict[str, Any], *args: str) -> List[str]:
    path = tmp_path / "service.json"
    path.write_text(json.dumps(config))
    code = main(["render", "--config", str(path), "--platform", "sagemaker", *args])
    captured = capsys.readouterr()
    return [str(code), *captured.out.splitlines(), *captured.err.splitlines()]


def test_cli_prints_parameters_warnings_and_the_command(tmp_path: Any, capsys: Any) -> None:
    base: Dict[str, Any] = CONFIG
    slow = dict(base, metadata=dict(base["metadata"], rpc={"keepalive": 120000}))
    lines = cli(tmp_path, capsys, slow)
    assert lines[:2] == ["0", "# sagemaker: tf-serving-test, image <account>.dkr.ecr.<region>."
                         "amazonaws.com/tfserverless:tensorflow_cpu_2.21-cloudrun"]
    assert lines[2] == f"# warning: {render_sagemaker.TOKEN_LINE}"
    assert lines[3].startswith("# warning: metadata.rpc.keepalive=120000 ms")
    assert "MemorySizeInMB=4096" in lines and "ModelDataUrl=" in lines
    assert lines[-1].startswith("aws cloudformation deploy --template-file sagemaker.yaml")
    out = json.loads("\n".join(cli(tmp_path, capsys, slow, "--json")[1:]))
    assert out["platform"] == "sagemaker" and len(out["warnings"]) == 2


def test_cli_refusals_exit_2_with_one_line(tmp_path: Any, capsys: Any) -> None:
    for config, args in [(dict(CONFIG, processor="tensorflow_gpu_2.21"), ()),
                         (dict(CONFIG, metadata={"memory": 8192}), ()),
                         (CONFIG, ("--protocol", "grpc")), (CONFIG, ("--model-size", "6G"))]:
        code, *rest = cli(tmp_path, capsys, config, *args)
        assert code == "2" and len(rest) == 1, rest
        assert rest[0].startswith("tfserverless: configuration error: ") and "--platform" in rest[0]


def cfn_lint(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(BIN, "cfn-lint"), path], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow  # a subprocess, ~1.3 s each
def test_cfn_lint_passes_the_template() -> None:
    proc = cfn_lint(TEMPLATE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow  # a subprocess, ~1.3 s each
def test_cfn_lint_fails_a_broken_copy(tmp_path: Any) -> None:
    text = template()
    broken = text.replace("MemorySizeInMB: !Ref MemorySizeInMB", "MemorySizeInMB: 7000")
    assert broken != text
    path = tmp_path / "sagemaker.yaml"
    path.write_text(broken)
    proc = cfn_lint(str(path))
    assert proc.returncode != 0 and "7000 is greater than the maximum of 6144" in proc.stdout


def test_the_container_environment_is_one_serve_accepts() -> None:
    """What sagemaker.yaml gives the container for render's parameters, read as serve reads it:
    empty values are serve's defaults, and a ModelDataUrl's model is read at /opt/ml/model."""
    from tfserverless.config import Config

    text = template()
    refs = dict(re.findall(r"^          ([A-Z_]+): !Ref (\w+)$", text, re.M))
    fixed = dict(re.findall(r'^          ([A-Z_]+): "?(\w+)"?$', text, re.M))
    p = dict(params(svc(model_path="s3://models/m.tar.gz")), ServiceToken="")
    cfg = Config.from_environ({**{k: p[v] for k, v in refs.items()}, **fixed})
    assert (cfg.platform, cfg.model_path, cfg.service_token) == ("sagemaker", "/opt/ml/model", "")
    assert cfg.max_body_bytes == render_sagemaker.PAYLOAD_BYTES and cfg.rpc_worker_threads == 4
    assert (cfg.rpc_keepalive_ms, cfg.rpc_batching, cfg.workers_set) == (30000, False, False)


def test_the_deploy_doc_shows_what_render_prints(tmp_path: Any, capsys: Any) -> None:
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        doc = f.read()
    config = re.search(r"^echo '(.*)' > out/service\.json$", doc, re.M)
    assert config, "docs/deploy.md's service.json"
    command = ".venv-serve/bin/tfserverless render --config out/service.json --platform sagemaker\n"
    shown = doc[doc.index(command) + len(command):].split("\n```", 1)[0].splitlines()
    printed = cli(tmp_path, capsys, json.loads(config.group(1)))
    assert printed[0] == "0"
    assert [line if line.startswith("#") or line.startswith("aws ") else "# " + line
            for line in printed[1:]] == shown
