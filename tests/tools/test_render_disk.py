"""Fast lane: `render --model-size`: each platform's disk from the model's, the boundaries, the
refusals (one line), and no flag leaving a remote model's output as it was."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from tfserverless.__main__ import main
from tfserverless.errors import ConfigError
from tfserverless.storage.archive import DISK_MARGIN
from tfserverless.tools import deploy, render
from tfserverless.tools.modelsize import GIB, MIB, Disk

from .test_render_k8s import CONFIG, validator

SVC = deploy.parse_service(CONFIG, deploy.load_processors())  # 4000 MB, 2 vCPUs, tar.gz on oss


def disk(need: int) -> Disk:
    """A model whose fetch needs ``need`` bytes of disk (a tar.gz: model + the margin)."""
    return Disk(need - DISK_MARGIN, need, "--model-size")


def out(platform: str, need: int, svc: deploy.Deployment = SVC) -> Dict[str, Any]:
    return render.render(svc, platform, disk(need))


def refusal(platform: str, need: int, svc: deploy.Deployment = SVC) -> str:
    with pytest.raises(ConfigError) as e:
        render.render(svc, platform, disk(need))
    assert "\n" not in e.value.message
    return e.value.message


@pytest.mark.parametrize("need,mb", [(1, "512"), (512 * MIB, "512"), (512 * MIB + 1, "513"),
                                     (3000 * MIB, "3000"), (10240 * MIB, "10240")])
def test_lambda_ephemeral_storage_is_the_need_in_mb_at_least_512(need: int, mb: str) -> None:
    p = out("aws", need)["parameters"]
    assert p["EphemeralStorageSize"] == mb and f"EphemeralStorageSize={mb}" in out("aws", need)["command"]


def test_lambda_refuses_one_byte_past_10240_mb() -> None:
    line = refusal("aws", 10240 * MIB + 1)
    assert line == ("model of 9.98 GiB (--model-size) needs 10241 MiB of disk to fetch and "
                    "extract; AWS Lambda's ephemeral storage is at most 10240 MB: use --platform "
                    "cloudrun, knative or kserve, or a smaller model")


@pytest.mark.parametrize("need,mb", [(1, "512"), (512 * MIB, "512"), (512 * MIB + 1, "10240"),
                                     (10240 * MIB, "10240")])
def test_fc_disk_is_512_or_10240(need: int, mb: str) -> None:
    fc = out("fc", need)
    assert fc["parameters"]["DISK_SIZE"] == mb and f"DISK_SIZE={mb} " in fc["command"]


def test_fc_refuses_one_byte_past_10240_mb() -> None:
    line = refusal("fc", 10240 * MIB + 1)
    assert "needs 10241 MiB" in line and "Function Compute's disk is 512 or 10240 MB" in line


def flags(command: str) -> Dict[str, str]:
    return dict(f.strip("'").split("=", 1) for f in command.split()[4:] if f.strip("'").startswith("--"))


def test_cloud_run_memory_holds_the_model_beside_the_config_memory() -> None:
    f = flags(out("cloudrun", 800 * MIB)["command"])
    assert f["--memory"] == "4800Mi" and f["--cpu"] == "2"  # 2 vCPUs already
    one_cpu = SVC._replace(cpu=1.0)
    f = flags(out("cloudrun", 96 * MIB, one_cpu)["command"])
    assert f["--memory"] == "4096Mi" and f["--cpu"] == "1"  # 4 GiB: 1 vCPU may still have it
    f = flags(out("cloudrun", 96 * MIB + 1, one_cpu)["command"])
    assert f["--memory"] == "4097Mi" and f["--cpu"] == "2"  # over 4 GiB needs 2
    f = flags(out("cloudrun", (32768 - 4000) * MIB)["command"])
    assert f["--memory"] == "32768Mi" and f["--cpu"] == "8"  # at the maximum
    line = refusal("cloudrun", (32768 - 4000) * MIB + 1)
    assert ("Cloud Run's filesystem is in memory, so --memory=32769Mi with metadata.memory=4000, "
            "over its 32768Mi maximum: use --platform knative or kserve") in line


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_kubernetes_requests_and_limits_ephemeral_storage(platform: str) -> None:
    m = out(platform, 2 * GIB)["manifest"]
    spec = m["spec"]["template"]["spec"] if platform == "knative" else m["spec"]["predictor"]
    res = spec["containers"][0]["resources"]
    assert res["requests"]["ephemeral-storage"] == res["limits"]["ephemeral-storage"] == "2098Mi"
    assert res["limits"]["memory"] == "4000Mi"  # the disk is not memory here
    errors = list(validator(platform).iter_errors(m))
    assert not errors, errors[:3]


@pytest.mark.parametrize("platform", ["cloudrun", "knative", "kserve"])
def test_a_model_past_the_extract_bound_raises_it(platform: str) -> None:
    big = render.render(SVC._replace(memory_mb=512), platform, Disk(20 * GIB, 20 * GIB + DISK_MARGIN, "x"))
    text = json.dumps(big)
    assert f"MAX_EXTRACT_BYTES={20 * GIB}" in text or \
        f'"name": "MAX_EXTRACT_BYTES", "value": "{20 * GIB}"' in text
    assert "MAX_EXTRACT_BYTES" not in json.dumps(out(platform, GIB))


def test_a_model_served_in_place_needs_the_least() -> None:
    in_place = Disk(3 * GIB, 0, "a local directory")
    assert render.render(SVC, "aws", in_place)["parameters"]["EphemeralStorageSize"] == "512"
    assert render.render(SVC, "fc", in_place)["parameters"]["DISK_SIZE"] == "512"
    said = render.render(SVC, "aws", in_place)["disk"]
    one = SVC._replace(sized_workers=1)  # a 3 GiB model: one worker (its size, not its disk)
    for platform in ("cloudrun", "knative", "kserve"):  # nothing fetched: nothing added
        got = render.render(SVC, platform, in_place)
        assert got == dict(render.render(one, platform), disk=said, workers=got["workers"])


def test_no_size_leaves_every_platform_as_before() -> None:
    assert "EphemeralStorageSize" not in render.render(SVC, "aws")["parameters"]
    assert "DISK_SIZE" not in render.render(SVC, "fc")["parameters"]
    assert "--memory=4000Mi" in render.render(SVC, "cloudrun")["command"]
    for platform in ("knative", "kserve"):
        assert "ephemeral-storage" not in json.dumps(render.render(SVC, platform))
    assert all("disk" not in render.render(SVC, p) for p in render.PLATFORMS)


def cli(tmp_path: Any, capsys: Any, config: Dict[str, Any], *args: str) -> List[str]:
    path = tmp_path / "service.json"
    path.write_text(json.dumps(config))
    code = main(["render", "--config", str(path), *args])
    captured = capsys.readouterr()
    return [str(code), *captured.out.splitlines(), *captured.err.splitlines()]


def test_cli_sizes_prints_and_refuses(tmp_path: Any, capsys: Any) -> None:
    lines = cli(tmp_path, capsys, CONFIG, "--platform", "aws", "--model-size", "800MB")
    assert lines[0] == "0" and lines[2] == "# disk: model of 800.0 MiB (--model-size) needs " \
        "816 MiB of disk to fetch and extract" and "EphemeralStorageSize=816" in lines
    code, line = cli(tmp_path, capsys, CONFIG, "--platform", "aws", "--model-size", "12GiB")
    assert code == "2" and line.startswith("tfserverless: configuration error: model of 12.00 "
                                           "GiB (--model-size) needs 12304 MiB")
    code, line = cli(tmp_path, capsys, CONFIG, "--platform", "fc", "--model-size", "lots")
    assert code == "2" and line == ("tfserverless: configuration error: --model-size 'lots' is "
                                    "not a size; expected bytes (800000000), units of 1024 "
                                    "(800MB, 1.5GiB, 2G) or auto")
    lines = cli(tmp_path, capsys, CONFIG, "--platform", "kserve", "--json", "--model-size", "1G")
    assert json.loads("\n".join(lines[1:]))["disk"]["need_mib"] == 1024 + 16


def test_cli_without_the_flag_reads_only_a_local_model(tmp_path: Any, capsys: Any) -> None:
    before = cli(tmp_path, capsys, CONFIG, "--platform", "aws")
    assert not any("EphemeralStorageSize" in x or x.startswith("# disk") for x in before)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"x" * (3 << 20))
    local = dict(CONFIG, model_path=str(tmp_path / "m"))
    lines = cli(tmp_path, capsys, local, "--platform", "aws")
    assert "# disk: model of 3.0 MiB (a local directory) is served in place: no disk" in lines
    assert "EphemeralStorageSize=512" in lines


@pytest.mark.parametrize("model_mb,memory_mb,workers", [
    (50, 4000, "2"),     # small: one per vCPU, as metadata.cpu says
    (1024, 4000, "1"),   # large: one worker serves it as fast (benchmarks/results/workers.md)
    (50, 1024, "1"),     # two copies of even a small model do not fit 1 GB
])
def test_workers_follow_the_model_size_and_memory(model_mb: int, memory_mb: int,
                                                  workers: str) -> None:
    svc = SVC._replace(memory_mb=memory_mb)
    assert svc.workers == 2
    got = render.render(svc, "knative", Disk(model_mb * MIB, model_mb * MIB, "--model-size"))
    env = {e["name"]: e.get("value") for e in
           got["manifest"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WORKERS"] == workers
    assert got["workers"].startswith(f"workers: {workers} (")
    assert render.render(svc, "fc", Disk(model_mb * MIB, model_mb * MIB, "x"))[
        "parameters"]["WORKERS"] == workers


def test_no_workers_without_a_model_size() -> None:
    """serve then chooses them itself (a WORKERS from metadata.cpu alone, which serve takes
    as the user's, was refused at start when two copies of a large model could not fit)."""
    assert "WORKERS" not in render.render(SVC, "fc")["parameters"]
    assert "WORKERS" not in render.render(SVC, "cloudrun")["command"]
