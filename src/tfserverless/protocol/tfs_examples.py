"""TF Serving's Classify, Regress and MultiInference by hand
(``tensorflow_serving/apis/{input,classification,regression,inference}.proto``): an ``Input``
as the serialized ``tf.Example`` strings a signature takes, the model's outputs as a
``ClassificationResult``/``RegressionResult``, checked as TF Serving's classifier.cc and
regressor.cc check them."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import BadRequest
from .base import Decoded
from .dtypes import MAX_STRINGS
from .eas_array import MAX_INPUTS
from .signature import Given, Signature, feeds_for_signature
from .tensor_proto import Part, frame, refused
from .text import quote
from .tfs_messages import ModelSpec, encode_spec, merge_spec
from .tfserving import CLASSIFY, REGRESS
from .wire import Buffer, Malformed, delimited, read_key, skip_field, span, utf8, varint_bytes, view

VERBS = {CLASSIFY: "classify", REGRESS: "regress"}  # method_name -> verb
METHODS = {v: k for k, v in VERBS.items()}
OUTPUTS = {"classify": ("classes", "scores"), "regress": ("outputs",)}  # what each verb reads
#: bytes the context of an ``example_list_with_context`` adds by being copied into every example
MAX_CONTEXT_BYTES = 64 << 20
DT_STRING = 7


class Form(NamedTuple):
    """What ``encode`` needs of a decoded request: its verb and how many examples it held."""

    verb: str
    rows: int = 0


def merged(buf: memoryview, spans: Sequence[Tuple[int, int]]) -> Buffer:
    """A message sent in several occurrences, as protobuf merges them (their concatenation)."""
    if len(spans) == 1:
        return buf[spans[0][0] : spans[0][1]]
    return b"".join(bytes(buf[a:b]) for a, b in spans)


def decode_input(data: Buffer) -> np.ndarray:
    """An ``Input`` as the 1-D object array of serialized Examples TF Serving feeds: an
    ``example_list``'s as they are, an ``example_list_with_context``'s each after the context's
    bytes (so the example's own features win, as TF Serving merges them)."""
    buf = view(data)
    kind, examples, context = 0, [], []  # type: Tuple[int, List[Tuple[int, int]], List[Tuple[int, int]]]
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_key(buf, pos, end)
        if key not in (0x0A, 0x12):
            pos = skip_field(buf, pos, end, key & 7)
            continue
        start, pos = span(buf, pos, end, "input")
        if key >> 3 != kind:  # a oneof: the last kind sent wins
            kind, examples, context = key >> 3, [], []
        while start < pos:
            k, start = read_key(buf, start, pos)
            if k == 0x0A or (k == 0x12 and kind == 2):
                a, start = span(buf, start, pos, "an Example")
                (examples if k == 0x0A else context).append((a, start))
                if len(examples) > MAX_STRINGS:
                    raise BadRequest(f"input holds more than {MAX_STRINGS} examples; expected at "
                                     "most that many in one request")
            else:
                start = skip_field(buf, start, pos, k & 7)
    if not examples:
        raise BadRequest("input holds no examples; expected an example_list or "
                         "example_list_with_context of at least one tf.Example")
    head = b"".join(bytes(buf[a:b]) for a, b in context)
    if len(head) * len(examples) > MAX_CONTEXT_BYTES:
        raise BadRequest(f"example_list_with_context copies a context of {len(head)} bytes into "
                         f"each of {len(examples)} examples; expected at most {MAX_CONTEXT_BYTES} "
                         "bytes of copies in one request")
    out = np.empty(len(examples), dtype=object)
    out[:] = [head + bytes(buf[a:b]) for a, b in examples]
    return out


def takes_examples(sig: Signature) -> bool:
    """A signature whose one input is DT_STRING (TF2's serialized-Example signatures)."""
    return len(sig.inputs) == 1 and next(iter(sig.inputs.values())).dtype == DT_STRING


def examples_decoded(sig: Signature, verb: str, examples: np.ndarray) -> Decoded:
    """Serialized Examples as ``sig``'s feeds for ``verb`` (classify or regress), as the REST
    codec takes them: a signature exported for the verb, or one taking serialized Examples."""
    method = METHODS[verb]
    if sig.method != method and not takes_examples(sig):
        raise BadRequest(f"signature '{sig.name}' is not a {verb} signature (method_name "
                         f"{sig.method or 'none'}); expected one exported with {method} or "
                         "taking serialized tf.Example strings as its one input, or call Predict")
    if len(sig.inputs) != 1:
        raise BadRequest(f"signature '{sig.name}' has {len(sig.inputs)} inputs; expected one of "
                         "serialized tf.Example")
    outputs = [k for k in OUTPUTS[verb] if k in sig.outputs]
    if not outputs:
        raise BadRequest(f"signature '{sig.name}' has no output {' or '.join(map(repr, OUTPUTS[verb]))}; "
                         f"expected it to {verb}")
    (alias,) = sig.inputs
    feeds = feeds_for_signature({alias: Given(DT_STRING, examples)}, sig)
    return Decoded(sig, feeds, outputs, Form(verb, len(examples)))


# --- results --------------------------------------------------------------------------------


def _checked(name: str, value: Any, verb: str, kinds: str, want: str, rows: int) -> np.ndarray:
    a: np.ndarray = np.asarray(value)
    if a.ndim != 2:
        raise BadRequest(f"{verb} output '{name}' has shape {list(a.shape)}; expected "
                         "[batch_size, num_classes]")
    if a.dtype.kind not in kinds:
        raise BadRequest(f"{verb} output '{name}' is {a.dtype}; expected {want}")
    if a.shape[0] != rows:
        raise BadRequest(f"{verb} output '{name}' has {a.shape[0]} rows; expected one per "
                         f"example ({rows})")
    return a


def _float_records(values: np.ndarray, tag: int) -> np.ndarray:
    """Each float as a one-field message in a repeated field 1 (``0a 05 <tag> <f32>``), in a
    (rows, 7 * columns) array of bytes: no loop per element."""
    rows = values.shape[0]
    rec = np.empty((*values.shape, 7), np.uint8)
    rec[..., :3] = (0x0A, 0x05, tag)
    rec[..., 3:] = np.ascontiguousarray(values, "<f4").view(np.uint8).reshape((*values.shape, 4))
    return rec.reshape(rows, -1)


def _text(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8")


def classification_result(outputs: Mapping[str, Any], rows: int) -> bytes:
    """A ClassificationResult: per example, per class, its label and score."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise BadRequest("classify signature gives neither 'classes' nor 'scores'")
    if classes is not None:
        classes = _checked("classes", classes, "classify", "OSU", "DT_STRING", rows)
    if scores is not None:
        scores = _checked("scores", scores, "classify", "f", "DT_FLOAT", rows)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise BadRequest(f"classify outputs 'classes' and 'scores' have {classes.shape[1]} and "
                         f"{scores.shape[1]} columns; expected as many of each")
    if classes is None:
        rec = _float_records(np.asarray(scores), 0x15)
        head = np.frombuffer(b"\x0a" + varint_bytes(rec.shape[1]), np.uint8)
        return np.concatenate([np.broadcast_to(head, (rows, head.size)), rec], axis=1).tobytes()
    width = classes.shape[1]
    sb = np.ascontiguousarray(scores, "<f4").tobytes() if scores is not None else None
    msgs: List[bytes] = []
    for i, label in enumerate(classes.reshape(-1).tolist()):  # strings: one by one
        lb = _text(label)
        body = (b"\x0a" + varint_bytes(len(lb)) + lb if lb else b"") + \
            (b"\x15" + sb[4 * i : 4 * i + 4] if sb is not None else b"")
        msgs.append(b"\x0a" + varint_bytes(len(body)) + body)
    out: List[Part] = []
    for r in range(rows):
        out += frame(1, list(msgs[r * width : (r + 1) * width]))
    return b"".join(out)


def regression_result(outputs: Mapping[str, Any], rows: int) -> bytes:
    """A RegressionResult: one value per example, from 'outputs' of shape [rows] or [rows, 1]."""
    out = outputs.get("outputs")
    if out is None:
        raise BadRequest("regress signature gives no 'outputs'")
    a = np.asarray(out)
    if not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
        raise BadRequest(f"regress output 'outputs' has shape {list(a.shape)}; expected "
                         "[batch_size] or [batch_size, 1]")
    if a.shape[0] != rows:
        raise BadRequest(f"regress output 'outputs' has {a.shape[0]} rows; expected one per "
                         f"example ({rows})")
    if a.dtype.kind != "f":
        raise BadRequest(f"regress output 'outputs' is {a.dtype}; expected DT_FLOAT")
    return _float_records(a.reshape(rows, 1), 0x0D).tobytes()


RESULTS = {"classify": classification_result, "regress": regression_result}


def encode_result(verb: str, outputs: Mapping[str, Any], rows: int) -> bytes:
    """The ClassificationResult or RegressionResult of ``rows`` examples."""
    return RESULTS[verb](outputs, rows)


def encode_examples_response(verb: str, spec: ModelSpec, outputs: Mapping[str, Any],
                             rows: int) -> bytes:
    """A ClassificationResponse or RegressionResponse (result = 1, model_spec = 2)."""
    return b"".join([*frame(1, [encode_result(verb, outputs, rows)]), *frame(2, [encode_spec(spec)])])


# --- MultiInference -------------------------------------------------------------------------


class Task(NamedTuple):
    spec: ModelSpec
    verb: str  # "classify" or "regress", from method_name


class TaskResult(NamedTuple):
    spec: ModelSpec  # as the reply names it: name, version, signature_name
    verb: str
    result: bytes  # ``encode_result``'s


def _task(buf: memoryview, pos: int, end: int) -> Tuple[ModelSpec, str]:
    spec, method = ModelSpec(), ""
    for key, start, stop in delimited(buf, pos, end, {0x0A: "a task", 0x12: "a task"}):
        if key == 0x0A:
            spec = merge_spec(spec, buf, start, stop)
        else:
            method = utf8(buf, start, stop, "method_name")
    return spec, method


def read_multi(body: Buffer) -> Tuple[List[Task], Buffer]:
    """A MultiInferenceRequest's tasks, checked as TF Serving checks them (one model, each
    signature once, classify or regress), and its ``Input`` for ``decode_input``."""
    buf = view(body)
    raw: List[Tuple[ModelSpec, str]] = []
    spans: List[Tuple[int, int]] = []
    try:
        for key, start, stop in delimited(buf, 0, len(buf), {0x0A: "a task", 0x12: "input"}):
            if key == 0x12:
                spans.append((start, stop))
            elif len(raw) >= MAX_INPUTS:
                raise Malformed(f"more than {MAX_INPUTS} tasks")
            else:
                raw.append(_task(buf, start, stop))
    except Malformed as e:
        raise refused(e, "tensorflow.serving.MultiInferenceRequest") from None
    if not raw:
        raise BadRequest("MultiInferenceRequest has no tasks; expected at least one")
    tasks: List[Task] = []
    seen: Dict[str, Optional[str]] = {}
    for spec, method in raw:
        if not spec.name:
            raise BadRequest("a task's model_spec has no model name; expected the model's name")
        if spec.name != raw[0][0].name:
            raise BadRequest(f"tasks name models {quote(raw[0][0].name)} and {quote(spec.name)}; "
                             "expected every task to name the same model")
        sig = spec.signature_name or "serving_default"
        if sig in seen:
            raise BadRequest(f"signature {quote(sig)} is named by two tasks; expected each once")
        seen[sig] = None
        if method not in VERBS:
            raise BadRequest(f"task method_name {quote(method)} is not supported; expected "
                             f"{CLASSIFY} or {REGRESS}")
        tasks.append(Task(spec, VERBS[method]))
    return tasks, merged(buf, spans) if spans else b""


def encode_multi(results: Sequence[TaskResult]) -> bytes:
    """A MultiInferenceResponse: per task, its model_spec and its result."""
    out: List[Part] = []
    for r in results:
        field = 2 if r.verb == "classify" else 3  # classification_result, regression_result
        out += frame(1, [*frame(1, [encode_spec(r.spec)]), *frame(field, [r.result])])
    return b"".join(out)


__all__ = ["MAX_CONTEXT_BYTES", "METHODS", "OUTPUTS", "VERBS", "Form", "Task", "TaskResult",
           "classification_result", "decode_input", "encode_examples_response", "encode_multi",
           "encode_result", "examples_decoded", "merged", "read_multi", "regression_result",
           "takes_examples"]
