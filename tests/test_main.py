"""The CLI in-process, fast lane: the processor note `serve --config` prints."""

from __future__ import annotations

from typing import Any

from tfserverless.__main__ import installed_tensorflow, processor_note, unloadable
from tfserverless.tools import deploy


def test_a_processor_with_another_tensorflow_is_named_in_one_line() -> None:
    table = deploy.load_processors()
    assert processor_note("tensorflow_cpu_2.21", table, "2.21.0") == ""
    line = processor_note("tensorflow_cpu_1.15", table, "2.21.0")
    assert "processor tensorflow_cpu_1.15 runs TensorFlow 1.15.5" in line
    assert "with TensorFlow 2.21.0" in line and "packaging/build --processor tensorflow_cpu_1.15" in line
    assert "\n" not in line
    assert processor_note("tensorflow_cpu_1.15", table, None) == ""  # unknown here: nothing said


def test_installed_tensorflow_is_read_without_importing_it() -> None:
    import sys

    had = "tensorflow" in sys.modules
    version = installed_tensorflow()
    assert version is None or version[0].isdigit()
    assert ("tensorflow" in sys.modules) == had


def test_unknown_ops_and_attrs_set_off_their_default_are_what_an_old_tensorflow_lacks() -> None:
    from tfserverless.tools.graph_ops import missing

    ops = {"MatMul": ["T", "transpose_a", "transpose_b"], "Const": ["dtype", "value"]}
    used = {"MatMul": {"T": {b"0\x01"}, "grad_a": {b"(\x00"}},  # new attr, left at its default
            "VarHandleOp": {"dtype": {b"0\x01"}},  # an op that TensorFlow does not have
            "Const": {"dtype": {b"0\x01"}, "debug": {b"(\x01"}}}  # new attr, set off default
    defaults = {"MatMul": {"grad_a": b"(\x00"}, "Const": {"debug": b"(\x00"}}
    assert missing(used, defaults, ops) == ["Const.debug", "VarHandleOp"]
    assert missing(used, {}, ops) == ["Const.debug", "MatMul.grad_a", "VarHandleOp"]


def test_litert_processor_and_model_kind_must_match(tmp_path: Any) -> None:
    table = deploy.load_processors()
    saved, lite = tmp_path / "saved", tmp_path / "lite"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    lite.mkdir()
    (lite / "litert.json").write_text("{}")

    def svc(path: Any, processor: str) -> deploy.Service:
        return deploy.parse_service({"name": "m", "model_path": str(path), "processor": processor},
                                    table)

    assert processor_note("litert_cpu", table, "2.21.0") == ""  # no TensorFlow to differ
    assert unloadable(svc(lite, "litert_cpu"), table) == ""
    line = unloadable(svc(saved, "litert_cpu"), table)
    assert "serves `tfserverless convert` output" in line and f"tfserverless convert {saved}" in line
    line = unloadable(svc(lite, "tensorflow_cpu_2.21"), table)
    assert "was converted for LiteRT; expected processor litert_cpu" in line
    assert "\n" not in line
