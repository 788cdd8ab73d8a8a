"""What Amazon SageMaker's TensorFlow Serving container takes on ``POST /invocations``, turned
into the TF Serving REST request it would send on (then read by ``tfserving``): the content
types ``application/json`` (and ``application/jsonlines``, ``application/jsons``) and
``text/csv``, and the ``X-Amzn-SageMaker-Custom-Attributes`` header's ``tfs-model-name``,
``tfs-model-version`` and ``tfs-method``.

The rules are that container's (aws/deep-learning-containers @ e0ecedea,
``scripts/docker/tensorflow/inference/sagemaker/tensorflowServing.js``), so a client written
for it gets the same answers here:

- JSON naming ``"instances"``, ``"inputs"`` or ``"examples"`` is a TF Serving request as it is;
  else values separated only by whitespace (``}\\n{``) are JSON lines, each line one instance;
  else the body is one instance (``[[...]]``: the instances themselves).
- CSV: one line one instance (blank lines skipped); a line of one field is a scalar, of more
  a list; a field that is a JSON number is that number, any other a string (quotes and ``""``
  as CSV has them).  Numeric CSV is rewritten with a few C-level passes over the bytes, with
  no Python loop per field.

Imports no TensorFlow.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import BadRequest
from .base import Call, Codec, Decoded, Signatures
from .jsonio import NotJSON
from .sagemaker_text import csv_fields, csv_json, sub_spaces, unsub_offset
from .tfserving import TFServing
from .v2 import V2

ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
JSON_TYPES = ("application/json", "application/jsonlines", "application/jsons")
CSV_TYPE = "text/csv"
METHODS = ("predict", "classify", "regress")

_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz-"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_TFS_REQUEST = re.compile(rb'"(?:instances|inputs|examples)"\s*:')
_JSON_LINES = re.compile(rb"[}\]]\s*[\[{]")
#: a V2 (Open Inference Protocol) request: "inputs" a list of tensor objects, which TF
#: Serving's "inputs" (values, or {"b64": ...} strings) never holds, even inside a string
V2_JSON = re.compile(rb'"inputs"\s*:\s*\[\s*\{\s*"(?:name|shape|datatype|parameters|data)"\s*:')
#: a line break and the blank lines after it (what the container drops, by bytes.strip)
_JSON_LINE_BREAKS = re.compile(rb"\n(?:[ \t\r\x0b\x0c]*\n)*")
_VERSION = re.compile(r"[0-9]{1,19}")


class Attributes(NamedTuple):
    """What ``X-Amzn-SageMaker-Custom-Attributes`` asked for ('' where it named nothing)."""

    model: str = ""
    version: str = ""
    method: str = "predict"


def media_type(content_type: str) -> str:
    """``Content-Type`` without its parameters, lower case (``application/json; charset=...``
    is JSON, as the container reads it)."""
    return content_type.split(";", 1)[0].strip().lower()


def custom_attributes(header: str) -> Attributes:
    """The ``tfs-*`` pairs of the header (``tfs-model-name=m,tfs-method=classify``; other
    keys may sit beside them), each checked as the container checks it: a 400 naming it."""
    found: Dict[str, str] = {}
    for key, value in _pairs(header):
        if "=" not in value:  # the container drops such a pair
            found[key] = value.strip()
    model, version = found.get("tfs-model-name", ""), found.get("tfs-model-version", "")
    method = found.get("tfs-method", "predict")
    if "tfs-model-name" in found and not _MODEL_NAME.fullmatch(model):
        raise BadRequest(f"invalid tfs-model-name {model[:64]!r} in X-Amzn-SageMaker-Custom-"
                         "Attributes; expected letters, digits, '.', '_' or '-'")
    if "tfs-model-version" in found and not _VERSION.fullmatch(version):
        raise BadRequest(f"invalid tfs-model-version {version[:64]!r} in X-Amzn-SageMaker-"
                         "Custom-Attributes; expected a number")
    if method not in METHODS:
        raise BadRequest(f"invalid tfs-method {method[:64]!r} in X-Amzn-SageMaker-Custom-"
                         f"Attributes; expected {', '.join(METHODS)}")
    return Attributes(model, version, method)


def predict_only(method: str, what: str) -> None:
    """A 400 unless ``method`` is ``predict``: ``tfs-method`` picks TF Serving's verb, which
    only a TF Serving request has; a ``what`` body is a prediction, and answering it as one
    would hand a client that asked to classify or regress a reply of another shape."""
    if method != "predict":
        raise BadRequest(f"tfs-method={method} in X-Amzn-SageMaker-Custom-Attributes is for "
                         f"TF Serving JSON or CSV bodies, and this is {what}; expected "
                         "tfs-method=predict, or none")


def _pairs(header: str) -> Iterator[Tuple[str, str]]:
    """What the container's ``/tfs-[a-z\\-]+=[^,]+/g`` finds, split at its first '=', in
    linear time (that regex tries every 'tfs-' of ``tfs-tfs-tfs-...`` to the run's end: 1.2 s
    for a 64 KiB header).  A match never spans a comma and its value runs to the next, so a
    comma-separated piece holds at most one: the first '=' whose run of ``[a-z-]`` before it
    holds 'tfs-' and more, if anything follows that '='."""
    for piece in header.split(","):
        at = 0
        for part in piece.split("=")[:-1]:
            at += len(part) + 1
            run = part[len(part.rstrip(_KEY_CHARS)):]
            start = run.find("tfs-")
            if 0 <= start < len(run) - 4:
                if at < len(piece):
                    yield run[start:], piece[at:]
                break


def tfs_json(body: bytes) -> bytes:
    """A JSON ``/invocations`` body as the TF Serving REST request the container sends."""
    if _TFS_REQUEST.search(body):
        return body
    if _JSON_LINES.search(body):  # the lines that are not blank, joined by commas
        lines = _json_lines(body)[1]
        return _LINES_START + sub_spaces(_JSON_LINE_BREAKS, b",", lines) + b"]}"
    text = body.strip()
    if text.startswith(b"[["):
        return b'{"instances":' + text + b"}"
    return b'{"instances":[' + text + b"]}"


_LINES_START = b'{"instances":['
#: where a JSON parser's refusal says it broke, in the words ``jsonio`` gives it
_WHERE = re.compile(r"at line \d+ column \d+ \(byte (\d+)\)|at byte (\d+)|\(byte (\d+)\)")


def _json_lines(body: bytes) -> Tuple[int, bytes]:
    """The lines of a JSON-lines body from the first that is not blank to the last, and where
    they start."""
    first = body.rfind(b"\n", 0, len(body) - len(body.lstrip())) + 1
    last = body.find(b"\n", len(body.rstrip()))
    return first, body[first:] if last < 0 else body[first:last]


def tfs_json_offset(body: bytes, at: int) -> int:
    """The byte of ``body`` that byte ``at`` of ``tfs_json(body)`` came from (past the body's
    end for the brackets ``tfs_json`` closes it with)."""
    if _TFS_REQUEST.search(body):
        return at
    lead = len(body) - len(body.lstrip())
    if _JSON_LINES.search(body):
        first, lines = _json_lines(body)
        return first + unsub_offset(_JSON_LINE_BREAKS, lines, at - len(_LINES_START))
    start = b'{"instances":' if body[lead:].startswith(b"[[") else _LINES_START
    return lead + at - len(start)


def located(e: NotJSON, body: bytes, offset: Callable[[bytes, int], int]) -> NotJSON:
    """``e``, a parser's refusal of ``body`` as rewritten, as the client's body has it: where
    it broke there (``offset``: where a byte of the rewrite came from), and what it may be."""
    message = e.message.split("; expected", 1)[0]
    where = _WHERE.search(message)
    if where is not None:
        at = min(max(offset(body, int(next(g for g in where.groups() if g))), 0), len(body))
        line_start = body.rfind(b"\n", 0, at) + 1
        column = len(body[line_start:at].decode("utf-8", "replace")) + 1
        line = body.count(b"\n", 0, at) + 1
        message = _WHERE.sub(f"at line {line} column {column} (byte {at})", message, 1)
    return NotJSON(f"{message}; expected JSON lines (one instance a line), one instance, or "
                   'a JSON object with "instances", "inputs" or "examples"')


class SageMakerTFS:
    """The ``Codec`` of a JSON or CSV ``/invocations`` body: rewritten by ``convert`` into the
    TF Serving REST request the container would send, then read and answered as that."""

    name = "sagemaker"
    _tfs = TFServing()

    def __init__(self, convert: Callable[[bytes], bytes],
                 exact: Optional[Callable[[bytes], bytes]] = None,
                 offset: Optional[Callable[[bytes, int], int]] = None) -> None:
        """``exact``: the rewrite to read again should ``convert``'s not be JSON; ``offset``:
        where a byte of ``convert``'s came from in the body (refusals name that)."""
        self.convert, self.exact, self.offset = convert, exact, offset

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        body = bytes(body)
        converted = self.convert(body)
        try:
            return self._tfs.decode(converted, headers, model, call)
        except NotJSON as e:
            if self.offset is not None and converted is not body:
                raise located(e, body, self.offset) from None
            if self.exact is None:
                raise
        return self._tfs.decode(self.exact(body), headers, model, call)

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        return self._tfs.encode(outputs, decoded, call)


class SageMakerJSON:
    """The ``Codec`` of a JSON ``/invocations`` body: a V2 request (``V2_JSON``) is read and
    answered as V2, anything else as the TF Serving container reads JSON (``SageMakerTFS``).
    Told apart here, on the body as inflated, not by the route (a gzip body looks like
    nothing)."""

    name = "sagemaker"

    def __init__(self, tfs: SageMakerTFS, v2: V2) -> None:
        self.tfs, self.v2 = tfs, v2

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        codec: Codec = self.v2 if V2_JSON.search(body) else self.tfs
        if codec is self.v2:
            predict_only(call.verb, "a V2 request")
        d = codec.decode(body, headers, model, call)
        return d._replace(form=(codec, d.form))

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        codec, form = decoded.form
        encoder: Codec = codec
        return encoder.encode(outputs, decoded._replace(form=form), call)


JSON_CODEC = SageMakerJSON(SageMakerTFS(tfs_json, offset=tfs_json_offset), V2())
CSV_CODEC = SageMakerTFS(csv_json, csv_fields)

__all__ = ["ATTRIBUTES", "Attributes", "CSV_CODEC", "CSV_TYPE", "JSON_CODEC", "JSON_TYPES",
           "METHODS", "SageMakerJSON", "SageMakerTFS", "V2_JSON",
           "custom_attributes", "located", "media_type", "predict_only", "tfs_json",
           "tfs_json_offset"]
