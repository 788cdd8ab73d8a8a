"""A Lambda function instance on this machine: the runtime interface emulator (``make rie``)
running a runtime command as Lambda runs it, invoked over the emulator's API; and the zip
function's layout (``/var/runtime``, ``/var/task``, ``/opt``) rebuilt under a directory."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from typing import Any, Dict, List, Optional

import pytest
import requests

from ..conftest import PYTHON, ROOT, free_port
from ..processes import Logged

RIE = os.path.join(ROOT, "build", "aws-lambda-rie")
INVOKE = "/2015-03-31/functions/function/invocations"
#: what the runtime client imports (the managed runtime has its own in /var/runtime)
RUNTIME_CLIENT = ("awslambdaric", "runtime_client", "simplejson", "snapshot_restore_py")


def emulator() -> str:
    """The emulator's binary: fetched by ``make rie`` (``make test`` does) if it is missing;
    the test skips only when it cannot be had."""
    if not os.access(RIE, os.X_OK):
        proc = subprocess.run(["make", "-s", "rie", f"PY={PYTHON}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        if not os.access(RIE, os.X_OK):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"Lambda's runtime interface emulator could not be had ({RIE}: "
                        f"`make rie` said {tail[0][:200]!r}); `make test` fetches it")
    return RIE


class Function(Logged):
    """The emulator on free ports (its invoke API and the runtime API it serves the runtime
    on), running ``argv`` in ``cwd`` with only ``env``, as Lambda does; the runtime starts
    on the first invoke.  ``first_reply``: seconds from start to that invoke's reply."""

    def __init__(self, argv: List[str], cwd: str, env: Dict[str, str], log_path: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{INVOKE}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.first_reply: Optional[float] = None
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [emulator(), "--log-level", "error",
             "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
             "--runtime-api-address", f"127.0.0.1:{free_port()}", *argv],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the emulator exited: {self.log()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"the emulator did not listen: {self.log()[-2000:]}")

    def invoke(self, event: Dict[str, Any]) -> Dict[str, Any]:
        """The function's reply to ``event``; the emulator's own error (the runtime failed,
        the reply was refused) fails the test with the log."""
        r = requests.post(self.url, data=json.dumps(event), timeout=120)
        if self.first_reply is None:
            self.first_reply = time.perf_counter() - self.started
        assert r.status_code == 200, (r.status_code, r.text[:500], self.log()[-3000:])
        return dict(r.json())


def base_env(home: str, **extra: str) -> Dict[str, str]:
    """What Lambda gives every function (the emulator adds AWS_LAMBDA_FUNCTION_NAME, the
    runtime API, ...), with template.yaml's variables; nothing of this shell's."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
           "HOME": home, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "MODEL_CACHE_DIR": os.path.join(home, "tfserverless-cache"), "LOG_LEVEL": "INFO"}
    env.update(extra)
    return env


def image_function(env: Dict[str, str], log_path: str) -> Function:
    """The image's ENTRYPOINT + CMD (packaging/build's lambda flavour): ``python3 -m
    awslambdaric main.lambda_handler`` in /app/handler, the engine installed beside it."""
    full = dict(env, TFSERVERLESS_PROCESSOR="tensorflow_cpu_2.21")
    if os.environ.get("PYTHONPATH"):  # a checkout run without `pip install -e .`
        full["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return Function([PYTHON, "-m", "awslambdaric", "main.lambda_handler"],
                    os.path.join(ROOT, "handler"), full, log_path)


def zip_layout(root: str, layer_zip: str) -> Dict[str, str]:
    """template.yaml's zip function under ``root``: ``task`` (CodeUri handler/), ``opt``
    (the layer, unzipped as Lambda mounts it), ``runtime`` (the runtime client, as the
    managed runtime's /var/runtime holds it) and a Python with nothing else in it."""
    paths = {k: os.path.join(root, k) for k in ("task", "opt", "runtime", "venv")}
    shutil.copytree(os.path.join(ROOT, "handler"), paths["task"],
                    ignore=shutil.ignore_patterns("__pycache__"))
    with zipfile.ZipFile(layer_zip) as zf:
        zf.extractall(paths["opt"])
    os.makedirs(paths["runtime"])
    for name in RUNTIME_CLIENT:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is missing: `make venv` installs it"
        src = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
        os.symlink(src, os.path.join(paths["runtime"], os.path.basename(src)))
    base = glob.glob(os.path.join(sys.base_prefix, "bin", "python3.*[0-9]"))[0]
    subprocess.run([base, "-m", "venv", "--without-pip", paths["venv"]], check=True)
    return paths


def zip_function(paths: Dict[str, str], env: Dict[str, str], log_path: str) -> Function:
    """The zip function as the python3.11 managed runtime starts it: handler
    ``main.lambda_handler``, cwd and LAMBDA_TASK_ROOT the code, PYTHONPATH as Lambda sets it."""
    opt = os.path.join(paths["opt"], "python")
    site = os.path.join(opt, "lib", "python3.11", "site-packages")
    full = dict(env, LAMBDA_TASK_ROOT=paths["task"], LAMBDA_RUNTIME_DIR=paths["runtime"],
                PYTHONPATH=":".join([paths["runtime"], paths["task"], site, opt]))
    return Function([os.path.join(paths["venv"], "bin", "python"), "-m", "awslambdaric",
                     "main.lambda_handler"], paths["task"], full, log_path)
