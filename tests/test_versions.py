"""Version numbers as TF Serving reads them (``versions``), and the layout's choice by them."""

from __future__ import annotations

import os
from typing import Any, Optional

import pytest

from tfserverless.storage import find_saved_model_root
from tfserverless.versions import MAX_VERSION, version_number, version_of


@pytest.mark.parametrize("text,number", [
    ("123", 123), ("00000123", 123), ("0", 0), ("000", 0), (str(MAX_VERSION), MAX_VERSION),
    ("0" * 50 + "7", 7),
    (str(MAX_VERSION + 1), None), (str(2 ** 64 - 1), None), ("9" * 5000, None),
    ("", None), ("-1", None), ("+1", None), (" 1", None), ("1 ", None), ("1.0", None),
    ("0x1f", None), ("abc", None), ("\u00b2", None), ("\u0663", None), ("1_000", None),
])
def test_version_number(text: str, number: Optional[int]) -> None:
    """ASCII digits fitting an int64, leading zeros and all; nothing else ('²' is a digit to
    ``str.isdigit`` and ``int`` refuses it; '٣' is a digit to ``int``, not to TF Serving); a
    5000-digit text is refused by its length, before ``int``'s digit limit could raise."""
    assert version_number(text) == number


@pytest.mark.parametrize("path,version", [
    ("/m/00000123", 123), ("/m/00000123/", 123), ("/m/7", 7), ("/models/mnist", 1),
    ("relative", 1), ("/m/\u00b2", 1), (f"/m/{2 ** 64}", 1),
])
def test_version_of_a_model_path(path: str, version: int) -> None:
    assert version_of(path) == version


def _saved_model(path: Any) -> None:
    os.makedirs(path)
    with open(os.path.join(path, "saved_model.pb"), "wb"):
        pass


def test_layout_serves_the_highest_number_not_the_longest_name(tmp_path: Any) -> None:
    """``00000124`` beats ``00000123``, ``20`` beats ``0000019``; a '²' directory (a digit
    to ``str.isdigit``, not a number to ``int``) is no version and breaks nothing."""
    for d in ("00000123", "00000124", "0000019", "20", "\u00b2", "x"):
        _saved_model(tmp_path / "m" / d)
    root = find_saved_model_root(str(tmp_path / "m"), quiet=True)
    assert root == str(tmp_path / "m" / "00000124")
    for d in ("00000123", "00000124"):
        os.rename(tmp_path / "m" / d, tmp_path / f"gone-{d}")
    assert find_saved_model_root(str(tmp_path / "m"), quiet=True) == str(tmp_path / "m" / "20")
