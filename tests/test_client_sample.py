"""``make client`` (samples/client.py, the EAS SDK in its own venv) against a port nothing
listens on: one line saying so, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import ROOT, eas_python, free_port

pytestmark = pytest.mark.slow  # a subprocess in the EAS SDK's venv


def test_nothing_listening_is_one_line_and_a_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([eas_python(), os.path.join(ROOT, "samples", "client.py"), url, "mnist"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"client: nothing answers on {url} (start it with `make serve`): Connection refused"]
