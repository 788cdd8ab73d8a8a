"""The README's fenced commands, run as a reader types them, so the README cannot drift.

Each fence says what it is in its info string:

- ```` ```sh quickstart ````: the two opening commands. ``make serve`` is run for real, in the
  background (the served model every other block calls); ``make test`` is what runs this.
- ```` ```sh ````: runs offline against that server (curl, the EAS SDK via ``make client``,
  TF Serving REST, V2, SageMaker's ``/invocations``, ``render`` for every platform ...).
- ```` ```python <venv> ````: run with that virtualenv's Python (``.venv-eas``, ``.venv-triton``,
  ``.venv``).
- ```` ```sh cloud ````: needs an account, Docker or a cluster: present (each platform's deploy
  command is there) but not run; an elided ``...`` command must be one ``render`` printed.

The commands run in a directory holding the checkout's files by link, so what they write (the
README sends it to ``out/``) stays out of the checkout. ``.venv-serve`` there is this test's
own virtualenv (``.venv`` under ``make test``, which has everything ``serve`` needs): ``make
test`` then need not build a third TensorFlow virtualenv (~1.5 GB) for it, and ``make serve``
itself runs with its virtualenv and sample-model prerequisites marked up to date (``make -o``).
The only rewrites are the ports: 8080 and 8500 become free ones.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from typing import Dict, Iterator, List, Tuple

import pytest
import requests

from .conftest import ROOT, eas_python, free_port

pytestmark = pytest.mark.slow  # a real server and subprocesses

README = os.path.join(ROOT, "README.md")
FENCE = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TOKEN = "readme-token"
PLATFORMS = ("aws", "fc", "cloudrun", "knative", "kserve", "sagemaker")
#: make's prerequisites the site has by link (the venvs and the sample), never rebuilt from here
MAKE = "make -o .venv-serve/.installed -o .venv-eas/.installed -o samples/mnist/saved_model.pb "
#: the fences this test runs: shell, and Python in one of the Makefile's virtualenvs
KNOWN = {("sh", "")} | {("python", v) for v in (".venv", ".venv-eas", ".venv-triton")}
#: what each platform's deploy step runs: present in a cloud block
DEPLOYS = {"aws": "sam deploy", "fc": "s deploy -t s-image.yaml", "cloudrun": "gcloud run deploy",
           "knative": "kubectl apply -f out/knative.json", "sagemaker": "aws cloudformation deploy"}


def fences() -> List[Tuple[str, str, str]]:
    with open(README, encoding="utf-8") as f:
        return [(lang, tag.strip(), body) for lang, tag, body in FENCE.findall(f.read())]


def commands(body: str) -> Iterator[str]:
    """Lines of a shell block that are commands: comments and blanks dropped, a trailing
    comment cut, continuation lines joined."""
    for line in body.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            yield line


def venv_of(python: str) -> str:
    return os.path.dirname(os.path.dirname(python))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sample_model: str) -> str:
    """The checkout by link (samples/mnist: the sample model), the virtualenvs by link."""
    out = str(tmp_path_factory.mktemp("readme"))
    for name in os.listdir(ROOT):
        if name not in {"out", "samples", ".git"} and not name.startswith(".venv"):
            os.symlink(os.path.join(ROOT, name), os.path.join(out, name))
    os.mkdir(os.path.join(out, "samples"))
    for name in os.listdir(os.path.join(ROOT, "samples")):
        if name not in {"mnist", "mnist.tmp"}:
            os.symlink(os.path.join(ROOT, "samples", name), os.path.join(out, "samples", name))
    os.symlink(sample_model, os.path.join(out, "samples", "mnist"))
    triton = os.environ.get("TRITON_PYTHON") or os.path.join(ROOT, ".venv-triton", "bin", "python")
    for name, target in ((".venv-serve", sys.prefix), (".venv", sys.prefix),
                         (".venv-eas", venv_of(eas_python())), (".venv-triton", venv_of(triton))):
        os.symlink(target, os.path.join(out, name))
    return out


@pytest.fixture(scope="module")
def env() -> Dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MODEL_PATH", "WORKERS"}}
    e.update(PORT=str(free_port()), GRPC_PORT=str(free_port()), SERVICE_TOKEN=TOKEN,
             PYTHONUNBUFFERED="1")
    return e


@pytest.fixture(scope="module")
def served(site: str, env: Dict[str, str]) -> Iterator[str]:
    """``make serve`` from the quick start, on a free port, until the module is done."""
    lang, tag, body = fences()[0]
    assert (lang, tag, list(commands(body))) == ("sh", "quickstart", ["make serve", "make test"]), \
        "the README opens with `make serve` and `make test`"
    log = open(os.path.join(site, "serve.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["bash", "-c", MAKE + "serve"], cwd=site, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                with open(log.name, encoding="utf-8", errors="replace") as f:
                    raise AssertionError(f"make serve exited {proc.returncode}: {f.read()[-3000:]}")
            try:
                if requests.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "make serve: not ready in 180 s"
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def localize(text: str, env: Dict[str, str]) -> str:
    return text.replace("127.0.0.1:8080", "127.0.0.1:" + env["PORT"]).replace(
        "127.0.0.1:8500", "127.0.0.1:" + env["GRPC_PORT"])


def run_block(lang: str, tag: str, body: str, site: str, env: Dict[str, str]) -> Tuple[str, str]:
    if lang == "sh":
        script = "\n".join(MAKE + line[len("make "):] if line.startswith("make ") else line
                           for line in localize(body, env).splitlines())
        argv = ["bash", "-eo", "pipefail", "-c", script]
    else:
        argv = [os.path.join(site, tag, "bin", "python"), "-c", localize(body, env)]
    proc = subprocess.run(argv, cwd=site, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, \
        f"exit {proc.returncode}:\n{body}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert '"error"' not in proc.stdout, f"{body}\n{proc.stdout[-2000:]}"
    return proc.stdout, proc.stderr


#: what a block's output shows when it worked, by a command it holds
EXPECT = {
    "make client": r"scores: \[",
    "tfserverless --help": r"usage: tfserverless",
    "decode_response": r"'scores': array\(\[\[",
    "/v1/models/mnist:predict": r'"predictions"',
    "/v2/models/mnist/infer": r'"outputs"',
    "/invocations": r'"predictions"',
    "PredictClient": r"^\[(-?[\d.e-]+, ){9}-?[\d.e-]+\]$",
    "tritonclient.http": r"^\[\[",
    "PredictionServiceStub": r"^\[\[",
    "--platform aws": r"^sam deploy ",
    "--platform fc": r"s deploy -t s-image\.yaml$",
    "--platform cloudrun": r"^gcloud run deploy ",
    "--platform sagemaker": r"^aws cloudformation deploy ",
}


def test_the_readme_commands_run(served: str, site: str, env: Dict[str, str]) -> None:
    before = set(os.listdir(site))
    printed: List[str] = []  # what render printed, every platform
    rendered, cloud = set(), []
    for lang, tag, body in fences()[1:]:
        if lang == "sh" and tag == "cloud":
            cloud.extend(commands(body))
            continue
        assert (lang, tag) in KNOWN, f"a fence the README test does not know: ```{lang} {tag}"
        out, err = run_block(lang, tag, body, site, env)
        for marker, pattern in EXPECT.items():
            if marker in body:
                assert re.search(pattern, out, re.M), f"{marker}: {pattern!r} not in\n{out[-2000:]}"
        for platform in PLATFORMS:
            if f"render --config samples/service.json --platform {platform}" in body:
                rendered.add(platform)
                printed += (out + err).splitlines()
    assert rendered == set(PLATFORMS)
    # what the commands wrote went to out/
    assert set(os.listdir(site)) - before <= {"out"}
    with tarfile.open(os.path.join(site, "out", "model.tar.gz")) as tar:
        assert "./saved_model.pb" in tar.getnames()
    for name, kind in (("knative", "Service"), ("kserve", "InferenceService")):
        with open(os.path.join(site, "out", f"{name}.json"), encoding="utf-8") as f:
            assert json.load(f)["kind"] == kind
    # cloud blocks: each platform's deploy is there; an elided command is one render printed
    for platform, deploy in DEPLOYS.items():
        assert any(line.startswith(deploy) or deploy in line for line in cloud), platform
    shown = [line.split("run: ", 1)[-1].replace("'", "") for line in printed]
    for line in cloud:
        if "..." in line:
            head, _, tail = line.replace("'", "").partition("...")
            assert any(p.startswith(head.strip()) and p.endswith(tail.strip()) for p in shown), \
                f"{line!r} is not a command render printed"


def test_the_readme_spells_the_command_one_way() -> None:
    """`tfserverless` is `.venv-serve/bin/tfserverless` in every command (#28: a bare
    `tfserverless` is "command not found" for a reader of `make serve`), and no extra is
    spelled as a package name pip cannot install."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    for lang, _, body in fences():
        if lang == "sh":
            for line in commands(body):
                for m in re.finditer(r"(\S*)tfserverless (serve|render|convert|--help)", line):
                    assert m.group(1) == ".venv-serve/bin/", line
    assert "tfserverless[" not in text
