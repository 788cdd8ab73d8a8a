"""packaging/build: a valid build context for every processor x flavour (hadolint), and the
processors table (docs/processors.md) in step with packaging/processors.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from typing import Any, Dict, List

import pytest

from .conftest import BIN, PYTHON, ROOT

BUILD = os.path.join(ROOT, "packaging", "build")


def processors() -> Dict[str, Any]:
    with open(os.path.join(ROOT, "packaging", "processors.json"), encoding="utf-8") as f:
        return dict(json.load(f))


def supported() -> List[str]:
    return sorted(k for k, v in processors()["processors"].items() if v.get("supported", True))


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    out = tmp_path_factory.mktemp("contexts")
    proc = subprocess.run([PYTHON, BUILD, "--processor", "all", "--flavour", "all", "--dry-run",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmds = [c for c in proc.stdout.splitlines() if c.startswith("docker build")]
    assert len(cmds) == len(supported()) * 3
    return {c.split()[-1].rsplit("/", 1)[-1]: c for c in cmds} | {"_out": str(out)}


EXPECTED_CMD = {"cloudrun": '"tfserverless", "serve"', "lambda": '"awslambdaric"',
                "fc": '"main:fc_app"'}


def test_unsupported_processors_are_refused_not_built(tmp_path: Any) -> None:
    proc = subprocess.run([PYTHON, BUILD, "--processor", "tensorflow_cpu_1.12", "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "docker build" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'tensorflow_cpu_1.12' is not supported" in lines[0]


@pytest.mark.parametrize("name", supported())
@pytest.mark.parametrize("flavour", ["cloudrun", "lambda", "fc"])
def test_context_is_complete_and_lints(contexts: Dict[str, str], name: str, flavour: str) -> None:
    key = f"{name}-{flavour}"
    ctx = os.path.join(contexts["_out"], key)
    cmd = contexts[key]
    proc = processors()["processors"][name]
    assert f"-t tfserverless:{key} " in cmd and "--network host" in cmd
    assert f"BASE_IMAGE={proc['base_image']}" in cmd
    with open(os.path.join(ctx, "Dockerfile"), encoding="utf-8") as f:
        docker = f.read()
    with open(os.path.join(ctx, "requirements.txt"), encoding="utf-8") as f:
        reqs = f.read().split()
    assert (proc.get("runtime") or proc["tensorflow"]) in reqs and all(p in reqs for p in proc["pins"])
    assert not any(r.startswith("tensorflow") for r in reqs) if proc.get("ours") else True
    assert any(n.endswith(".whl") for n in os.listdir(os.path.join(ctx, "dist")))
    assert os.path.isfile(os.path.join(ctx, "handler", "main.py"))
    assert os.path.isfile(os.path.join(ctx, "build-only", "ca-bundle.pem"))
    final = docker.split("\nFROM ${BASE_IMAGE}\n", 1)[1]  # the final stage
    assert "build-only" not in final and "PIP_CERT" not in final and "pip install" not in final
    assert "USER 10001" in final and EXPECTED_CMD[flavour] in final
    assert f"TFSERVERLESS_PROCESSOR={name}" in final
    assert ("NVIDIA_VISIBLE_DEVICES" in final) == (proc["device"] == "gpu")
    lint = subprocess.run([os.path.join(BIN, "hadolint"), os.path.join(ctx, "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_context_carries_the_engine_as_it_is_now(tmp_path: Any) -> None:
    # a wheel an earlier run left in --out must not end up in the image
    stale = tmp_path / "_dist"
    stale.mkdir()
    with zipfile.ZipFile(stale / "tfserverless-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr("tfserverless/entrypoints.py", "stale = True\n")
    proc = subprocess.run([PYTHON, BUILD, "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (ctx_dist,) = tmp_path.glob("*-cloudrun/dist")
    (wheel,) = ctx_dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("tfserverless/entrypoints.py").decode()
    with open(os.path.join(ROOT, "src", "tfserverless", "entrypoints.py"), encoding="utf-8") as f:
        assert shipped == f.read()


@pytest.mark.parametrize("args,msg", [(["--processor", "tensorflow_cpu_0.1"], "unknown processor"),
                                      (["--flavour", "azure"], "unknown flavour")])
def test_unknown_names_fail_with_one_line(args: Any, msg: str, tmp_path: Any) -> None:
    proc = subprocess.run([PYTHON, BUILD, *args, "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert msg in proc.stderr


def test_processors_table_is_generated_from_processors_json() -> None:
    table = subprocess.run([PYTHON, BUILD, "--readme-table"], capture_output=True, text=True,
                           check=True).stdout
    with open(os.path.join(ROOT, "docs", "processors.md"), encoding="utf-8") as f:
        doc = f.read()
    m = re.search(r"<!-- processors:start -->\n(.*?)<!-- processors:end -->", doc, re.S)
    assert m and m.group(1) == table, "run packaging/build --readme-table and update docs/processors.md"
    eas = {f"tensorflow_{d}_{v}" for d, vs in (("cpu", ["1.12", "1.14", "1.15", "2.3", "2.4", "2.7"]),
                                               ("gpu", ["1.12", "1.14", "1.15", "2.4", "2.7"]))
           for v in vs}
    assert eas <= set(processors()["processors"])


def test_compat_flags_match_make_compat() -> None:
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        makefile = f.read()
    flagged = {n for n, p in processors()["processors"].items() if p.get("compat")}
    current = f"tensorflow_cpu_{processors()['current']}"
    assert current in flagged
    for name in flagged - {current}:  # the current one is what make test itself runs
        assert os.path.isfile(os.path.join(ROOT, "packaging", "compat", f"{name}.txt")), name
        assert f"COMPAT_PY_{name} :=" in makefile, name
        assert f"$(COMPAT)/{name}/.installed" in makefile, name


def test_model_is_baked_in_converted_for_litert(sample_model: str, tmp_path: Any) -> None:
    proc = subprocess.run([PYTHON, BUILD, "--processor", "litert_cpu", "--flavour", "all",
                           "--model", sample_model, "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flavour in ("cloudrun", "lambda", "fc"):
        ctx = tmp_path / f"litert_cpu-{flavour}"
        assert (ctx / "model" / "litert.json").is_file() and (ctx / "model" / "model.tflite").is_file()
        final = (ctx / "Dockerfile").read_text().split("\nFROM ${BASE_IMAGE}\n")[1]
        assert "COPY model/ /app/model/\nENV MODEL_PATH=/app/model" in final
        lint = subprocess.run([os.path.join(BIN, "hadolint"), str(ctx / "Dockerfile")],
                              capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    tf = subprocess.run([PYTHON, BUILD, "--processor", "tensorflow_cpu_2.21", "--model", sample_model,
                         "--dry-run", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert tf.returncode == 0, tf.stderr[-2000:]
    assert (tmp_path / "tensorflow_cpu_2.21-cloudrun" / "model" / "saved_model.pb").is_file()
    bad = subprocess.run([PYTHON, BUILD, "--processor", "litert_cpu", "--model", str(tmp_path / "no"),
                          "--dry-run", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode != 0 and "packaging/build: --model for litert_cpu:" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0, bad.stderr


@pytest.mark.parametrize("argv, env, want", [
    (["serve"], {}, "tfserverless serve --host 0.0.0.0 | platform=sagemaker"),
    (["serve", "--port", "9000"], {}, "tfserverless serve --host 0.0.0.0 --port 9000 | platform=sagemaker"),
    (["serve"], {"TFSERVERLESS_PLATFORM": "local"}, "tfserverless serve --host 0.0.0.0 | platform=local"),
    (["tfserverless", "serve", "--host", "0.0.0.0"], {}, "tfserverless serve --host 0.0.0.0 | platform="),
    (["sh", "-c", "echo as given"], {}, "as given"),
])
def test_entrypoint_serves_sagemakers_bare_serve(tmp_path: Any, argv: List[str],
                                                 env: Dict[str, str], want: str) -> None:
    """SageMaker runs ``docker run IMAGE serve``: the entrypoint makes that ``tfserverless
    serve`` under SageMaker; the image's CMD and any other command run as given."""
    fake = tmp_path / "tfserverless"
    fake.write_text('#!/bin/sh\necho "tfserverless $* | platform=$TFSERVERLESS_PLATFORM"\n')
    fake.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    base = {k: v for k, v in os.environ.items() if k != "TFSERVERLESS_PLATFORM"}
    out = subprocess.run([os.path.join(ROOT, "packaging", "entrypoint.sh"), *argv],
                         env=dict(base, PATH=path, **env), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
