"""errors.first_line, fast lane: how every reply and log names an exception in one line."""

from __future__ import annotations

from tfserverless.errors import BadRequest, first_line


class OpError(Exception):  # TensorFlow's errors carry ``message``
    def __init__(self, message: str) -> None:
        super().__init__("node X: " + message)
        self.message = message


def test_ours_by_message_others_by_first_line() -> None:
    assert first_line(BadRequest("bad input; expected x")) == "bad input; expected x"
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(OpError("shape mismatch\ntraceback")) == "shape mismatch"
    assert first_line(ValueError("one\ntwo"), named=True) == "ValueError: one"
    assert first_line(KeyError()) == "KeyError" and first_line(ValueError(""), named=True) == "ValueError"
