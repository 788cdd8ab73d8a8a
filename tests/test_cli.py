"""``python -m tfserverless serve|render --config service.json`` with EAS service configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any, Dict, List

import pytest

from .conftest import PYTHON, ROOT, Server, eas_call, free_port

EAS_EXAMPLE = {  # the EAS docs' example, as it is, plus warm-up and rpc settings
    "name": "tf_serving_test",
    "model_path": "http://examplebucket.oss-cn-shanghai.aliyuncs.com/models/model.tar.gz",
    "processor": "tensorflow_cpu_1.15",
    "warm_up_data_path": "oss://path/to/warm_up_test.bin",
    "metadata": {"instance": 2, "cpu": 1, "memory": 4000, "rpc": {"keepalive": 30000}},
}


def cli(args: List[str], config: Any, tmp_path: Any) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    path = tmp_path / "service.json"
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return subprocess.run([PYTHON, "-m", "tfserverless", *args, "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def render(platform: str, config: Any, tmp_path: Any) -> Dict[str, Any]:
    proc = cli(["render", "--platform", platform, "--json"], config, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_render_aws_matches_the_template(tmp_path: Any) -> None:
    out = render("aws", EAS_EXAMPLE, tmp_path)
    p = out["parameters"]
    assert out["image"] == "<account>.dkr.ecr.<region>.amazonaws.com/tfserverless:tensorflow_cpu_1.15-lambda"
    assert out["name"] == "tf-serving-test"  # CloudFormation stack names allow no "_"
    assert p["ModelPath"] == EAS_EXAMPLE["model_path"]
    assert p["WarmUpDataPath"] == "oss://path/to/warm_up_test.bin"
    assert p["MemorySize"] == "4000" and p["Timeout"] == "30" and p["ProvisionedConcurrency"] == "2"
    with open(os.path.join(ROOT, "template.yaml"), encoding="utf-8") as f:
        template = f.read()
    params = set(re.findall(r"^  (\w+):\n    Type:", template, re.M))
    assert set(p) <= params, set(p) - params
    assert "sam deploy --template-file template.yaml --stack-name tf-serving-test" in out["command"]


def test_render_fc_and_cloudrun(tmp_path: Any) -> None:
    fc = render("fc", EAS_EXAMPLE, tmp_path)  # TensorFlow: its FC image, a custom container
    assert fc["image"] == ("registry.<region>.aliyuncs.com/<namespace>/"
                           "tfserverless:tensorflow_cpu_1.15-fc") and fc["name"] == "tf_serving_test"
    assert "IMAGE=" in fc["command"] and "ROLE_ARN=" in fc["command"]
    assert fc["command"].endswith("s deploy -t s-image.yaml")
    assert fc["parameters"]["MEMORY"] == "4032" and fc["parameters"]["CPU"] == "1"
    # EAS's defaults: 5 running + 64 queued is what one instance takes at once
    assert fc["parameters"]["INSTANCE_CONCURRENCY"] == "69"
    assert fc["parameters"]["RPC_KEEPALIVE"] == "30000"
    with open(os.path.join(ROOT, "s-image.yaml"), encoding="utf-8") as f:
        syaml = f.read()
    for key in fc["parameters"]:
        assert f"env('{key}'" in syaml, key
    run = render("cloudrun", EAS_EXAMPLE, tmp_path)
    assert run["command"].startswith("gcloud run deploy tf-serving-test ")
    assert ("--image=<region>-docker.pkg.dev/<project>/<repository>/"
            "tfserverless:tensorflow_cpu_1.15-cloudrun") in run["command"]
    assert "--memory=4000Mi" in run["command"] and "--max-instances=2" in run["command"]
    assert "--concurrency=69" in run["command"] and "RPC_KEEPALIVE=30000" in run["command"]
    queued = dict(EAS_EXAMPLE, metadata={"rpc": {"worker_threads": 2, "max_queue_size": 10,
                                                 "rate_limit": 50}})
    run = render("cloudrun", queued, tmp_path)
    assert "--concurrency=12" in run["command"] and "RPC_RATE_LIMIT=50" in run["command"]
    assert render("fc", queued, tmp_path)["parameters"]["INSTANCE_CONCURRENCY"] == "12"
    gpu = dict(EAS_EXAMPLE, processor="tensorflow_gpu_2.7",
               metadata={"instance": 1, "cpu": 4, "memory": 16000, "gpu": 1})
    run = render("cloudrun", gpu, tmp_path)
    assert "--gpu=1" in run["command"] and "tensorflow_gpu_2.7-cloudrun" in run["command"]


@pytest.mark.parametrize("name,aws,cloudrun,fc", [
    ("tf_serving_test", "tf-serving-test", "tf-serving-test", "tf_serving_test"),
    ("9lives", "s-9lives", "s-9lives", "f_9lives"),
    ("Model-A_", "Model-A-", "model-a", "Model-A_"),
    ("x" * 80, "x" * 80, "x" * 63, "x" * 64),
])
def test_names_each_platform_accepts(name: str, aws: str, cloudrun: str, fc: str) -> None:
    from tfserverless.tools.render import platform_name

    got = (platform_name(name, "aws"), platform_name(name, "cloudrun"), platform_name(name, "fc"))
    assert got == (aws, cloudrun, fc)
    assert re.fullmatch(r"[A-Za-z][-A-Za-z0-9]*", got[0])
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", got[1]) and len(got[1]) <= 63
    assert re.fullmatch(r"[_A-Za-z][-_A-Za-z0-9]*", got[2]) and len(got[2]) <= 64


def test_render_maps_the_eas_autoscaler(tmp_path: Any) -> None:
    cfg = dict(EAS_EXAMPLE, autoscaler={"min": 2, "max": 5, "strategies": {"qps": 10}})
    proc = cli(["render", "--platform", "aws", "--json"], cfg, tmp_path)
    p = json.loads(proc.stdout)["parameters"]
    assert (p["ProvisionedConcurrency"], p["ReservedConcurrency"]) == ("2", "5")
    assert "autoscaler.strategies has no counterpart here" in proc.stderr
    assert render("fc", cfg, tmp_path)["parameters"]["MIN_INSTANCES"] == "2"
    run = render("cloudrun", cfg, tmp_path)["command"]
    assert "--min-instances=2" in run and "--max-instances=5" in run
    bad = cli(["render", "--platform", "aws"], dict(EAS_EXAMPLE, autoscaler={"min": 5, "max": 2}),
              tmp_path)
    assert bad.returncode == 2 and "autoscaler.min=5 is over autoscaler.max=2" in bad.stderr


def test_render_maps_batching_and_workers_from_metadata(tmp_path: Any) -> None:
    cfg = dict(EAS_EXAMPLE, metadata={"cpu": 2, "rpc": {"batching": True, "max_batch_size": 32,
                                                        "max_batch_timeout": 20}})
    fc = render("fc", cfg, tmp_path)["parameters"]
    assert fc["RPC_BATCHING"] == "true" and fc["RPC_MAX_BATCH_SIZE"] == "32"
    assert fc["RPC_MAX_BATCH_TIMEOUT"] == "20" and "WORKERS" not in fc  # serve chooses
    # two workers, each 5 calls of up to 32 requests running and 64 queued
    assert fc["INSTANCE_CONCURRENCY"] == "200"  # FC's cap (2 * (160 + 64) = 448)
    run = render("cloudrun", cfg, tmp_path)["command"]
    assert "--concurrency=448" in run and "RPC_BATCHING=true" in run and "WORKERS" not in run
    bad = dict(EAS_EXAMPLE, metadata={"rpc": {"batching": "yes"}})
    proc = cli(["render", "--platform", "fc"], bad, tmp_path)
    assert proc.returncode == 2 and "metadata.rpc.batching='yes' is not a boolean" in proc.stderr


def test_token_is_never_printed(tmp_path: Any) -> None:
    cfg = dict(EAS_EXAMPLE, token="tok-secret-123")
    for platform in ("aws", "fc", "cloudrun"):
        proc = cli(["render", "--platform", platform], cfg, tmp_path)
        assert proc.returncode == 0 and "tok-secret-123" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("config,msg", [
    (dict(EAS_EXAMPLE, processor="tensorflow_cpu_9.9"),
     "processor='tensorflow_cpu_9.9' is not a known processor"),
    (dict(EAS_EXAMPLE, metadata={"memory": "lots"}), "metadata.memory='lots' is not a number"),
    (dict(EAS_EXAMPLE, metadata={"cpu": -1}), "metadata.cpu=-1 is below"),
    (dict(EAS_EXAMPLE, metadata={"cpu": 1e9}), "metadata.cpu=1000000000.0 is over 256"),
    (dict(EAS_EXAMPLE, metadata={"rpc": {"max_batch_size": 10 ** 6}}),
     "metadata.rpc.max_batch_size=1000000 is over 4096"),
    (dict(EAS_EXAMPLE, metadata={"rpc": {"worker_threads": 10 ** 6}}),
     "metadata.rpc.worker_threads=1000000 is over 1024"),
    (dict(EAS_EXAMPLE, metadata={"gpu": 1}), "metadata.gpu=1 but processor tensorflow_cpu_1.15"),
    ({k: v for k, v in EAS_EXAMPLE.items() if k != "model_path"}, "model_path=None"),
    (dict({k: v for k, v in EAS_EXAMPLE.items() if k != "model_path"}, model_paht="/m"),
     "'model_paht' is not a field: a typo of 'model_path'?"),
    (dict(EAS_EXAMPLE, metadata={"memory": [1]}), "expected a whole number"),
    (dict(EAS_EXAMPLE, processor="tensorflow_cpu_1.12"),
     "processor='tensorflow_cpu_1.12' is not supported (TensorFlow 1.12 has no wheels"),
    (dict(EAS_EXAMPLE, name="bad name!"), "name='bad name!' is not a service name"),
    ("{not json", "is not valid JSON"),
])
def test_bad_configs_fail_with_one_line(config: Any, msg: str, tmp_path: Any) -> None:
    proc = cli(["render", "--platform", "cloudrun"], config, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], proc.stderr


def test_gpu_on_lambda_is_refused(tmp_path: Any) -> None:
    cfg = dict(EAS_EXAMPLE, processor="tensorflow_gpu_1.15", metadata={"gpu": 1})
    proc = cli(["render", "--platform", "aws"], cfg, tmp_path)
    assert proc.returncode == 2 and "AWS Lambda has no GPUs" in proc.stderr


def test_render_grpc_prints_a_manifest_with_h2c_and_refuses_lambda(tmp_path: Any) -> None:
    proc = cli(["render", "--platform", "knative", "--protocol", "grpc"], EAS_EXAMPLE, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (c,) = json.loads(proc.stdout)["spec"]["template"]["spec"]["containers"]
    assert c["ports"][0]["name"] == "h2c" and c["readinessProbe"]["grpc"] == {"port": 8080}
    assert {"name": "PROTOCOL", "value": "grpc"} in c["env"]
    proc = cli(["render", "--platform", "aws", "--protocol", "grpc"], EAS_EXAMPLE, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("tfserverless: configuration error: --protocol grpc: AWS Lambda")


def test_render_sagemaker_prints_parameters_and_the_deploy_and_refuses_gpus(tmp_path: Any) -> None:
    proc = cli(["render", "--platform", "sagemaker"], EAS_EXAMPLE, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == ("# sagemaker: tf-serving-test, image <account>.dkr.ecr.<region>."
                        "amazonaws.com/tfserverless:tensorflow_cpu_1.15-cloudrun")
    # an http(s) archive is fetched by the server; 4000 MB is 4096 serverless; 2 x 69 at once
    for line in ("ModelDataUrl=", f"ModelPath={EAS_EXAMPLE['model_path']}", "MemorySizeInMB=4096",
                 "MaxConcurrency=138", "ProvisionedConcurrency=2", "RpcKeepalive=30000"):
        assert line in lines, line
    assert lines[-1].startswith("aws cloudformation deploy --template-file sagemaker.yaml "
                                "--stack-name tf-serving-test --capabilities CAPABILITY_IAM ")
    gpu = dict(EAS_EXAMPLE, processor="tensorflow_gpu_1.15", metadata={"gpu": 1})
    proc = cli(["render", "--platform", "sagemaker"], gpu, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and proc.stdout == "", proc.stderr
    assert lines[0] == ("tfserverless: configuration error: metadata.gpu=1: SageMaker serverless "
                        "inference has no GPUs; expected --platform cloudrun, knative or kserve "
                        "(or a SageMaker real-time endpoint)")


def test_unknown_fields_are_named_and_ignored(tmp_path: Any) -> None:
    proc = cli(["render", "--platform", "aws"], dict(EAS_EXAMPLE, colour="blue"), tmp_path)
    assert proc.returncode == 0 and "field 'colour' is not used here; ignored" in proc.stderr
    cfg = dict(EAS_EXAMPLE, warm_up_data_pat="x", metadata={"rpc": {"max_queue_sise": 3}})
    proc = cli(["render", "--platform", "aws"], cfg, tmp_path)
    assert "'warm_up_data_pat' is not used here (did you mean 'warm_up_data_path'?)" in proc.stderr
    assert "(did you mean 'max_queue_size'?)" in proc.stderr


def test_serve_refuses_a_model_the_processors_tensorflow_cannot_load(models: Dict[str, str],
                                                                    tmp_path: Any) -> None:
    """The TF2-only export on the 1.15 processor: what TensorFlow 1.15's loader would say
    (`make compat` checks that it does), told at start from the SavedModel alone."""
    cfg = dict(EAS_EXAMPLE, model_path=models["tf2_native"], processor="tensorflow_cpu_1.15")
    proc = cli(["serve", "--port", "1"], cfg, tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "TensorFlow 1.15.5 cannot load the SavedModel" in line and "VarHandleOp.debug_name" in line


def test_serve_runs_an_eas_config_locally(models: Dict[str, str], tmp_path: Any) -> None:
    cfg = {"name": "mnist_cfg", "model_path": models["tf1_mnist"], "token": "cfg-token",
           "processor": "tensorflow_cpu_2.21", "metadata": {"instance": 1, "rpc": {"worker_threads": 4}}}
    path = tmp_path / "service.json"
    path.write_text(json.dumps(cfg))
    port = free_port()
    server = Server.__new__(Server)
    server.port = port
    server.url = f"http://127.0.0.1:{port}"
    server.log_path = str(tmp_path / "serve.log")
    server._log = open(server.log_path, "wb")  # noqa: SIM115 - closed by stop()
    server.proc = subprocess.Popen(
        [PYTHON, "-m", "tfserverless", "serve", "--config", str(path), "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, stdout=server._log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        server.wait_ready()
        [res] = eas_call({"endpoint": server.url, "service": "mnist_cfg", "token": "cfg-token",
                          "requests": [{"signature": "predict_images", "feeds": [
                              {"name": "images", "shape": [1, 784], "dtype": 1,
                               "values": [0.1] * 784}]}]})
        assert res["ok"], res
    finally:
        server.stop()


def test_render_litert_deploys_the_lambda_zip_and_fc_layer(tmp_path: Any) -> None:
    cfg = dict(EAS_EXAMPLE, processor="litert_cpu", model_path="s3://b/mnist-litert.tar.gz")
    out = render("aws", cfg, tmp_path)
    p = out["parameters"]
    assert out["image"] is None and p["Runtime"] == "litert" and "ImageUri" not in p
    with open(os.path.join(ROOT, "template.yaml"), encoding="utf-8") as f:
        template = f.read()
    params = set(re.findall(r"^  (\w+):\n    Type:", template, re.M))
    assert set(p) <= params, set(p) - params
    steps = out["command"].splitlines()
    assert steps[0] == "layers/build --platform aws --runtime litert"
    assert "fileb://build/layers/tfserverless-aws-litert-py3.11.zip" in steps[1]
    assert steps[2].startswith("sam deploy --template-file template.yaml") and "Runtime=litert" in steps[2]
    assert "CodeUri: handler/" in template and "- !Ref LiteLayerArn" in template
    fc = render("fc", cfg, tmp_path)
    assert fc["command"].startswith("layers/build --platform fc --runtime litert --python 3.10\n")
    assert ":layers/tfserverless-litert/versions/<version>" in fc["parameters"]["LAYER_ARN"]
    run = render("cloudrun", cfg, tmp_path)
    assert "tfserverless:litert_cpu-cloudrun" in run["command"]
