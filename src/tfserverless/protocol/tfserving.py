"""TF Serving's REST API (v1): ``:predict`` in the row (``instances``) and columnar
(``inputs``) formats, ``:classify`` and ``:regress`` on signatures exported for them, with
``{"b64": ...}`` for binary strings, replies shaped as TF Serving shapes them.  Numbers go
through numpy and ``jsonio`` (no per-element Python loops); strings are converted one by
one, as they must be.  Imports no TensorFlow.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Dict, List, Mapping, Tuple

import numpy as np

from ..errors import BadRequest
from . import jsonfast
from .base import Call, Decoded, Signatures
from .dtypes import DTYPES, MAX_RANK, check_dims, check_strings, dtype_name
from .examples import serialize_examples
from .jsonio import bool_words, dumps, loads
from .signature import Given, Signature, TensorSpec, check_names, feeds_for_signature
from .text import listed

PREDICT, CLASSIFY, REGRESS = ("tensorflow/serving/predict", "tensorflow/serving/classify",
                              "tensorflow/serving/regress")
JSON = {"Content-Type": "application/json"}

#: numpy kinds of parsed JSON values a signature dtype's kind accepts
_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "integers", "b": "true/false values"}


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _one_string(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"input '{name}' has a b64 value that is not base64") from None
    raise BadRequest(f"input '{name}' holds {type(value).__name__} values where strings are "
                     'expected; expected strings or {"b64": "..."}, in lists of equal lengths')


def _always() -> bool:
    return True


def once(f: Callable[[], bool]) -> Callable[[], bool]:
    """``f``, called on first use only."""
    memo: List[bool] = []

    def get() -> bool:
        if not memo:
            memo.append(f())
        return memo[0]
    return get


def _holds_bool(value: Any, a: np.ndarray) -> bool:
    """Whether the lists ``value`` (read as the numbers ``a``) hold a true or false: numpy
    reads [true, 0.5] as [1.0, 0.5].  Only a 0 or 1 can be one; then the values' types are
    looked at, in C (no Python loop)."""
    if not bool(((a == 0) | (a == 1)).any()):
        return False
    return bool in set(map(type, np.array(value, dtype=object).reshape(-1)))


def to_array(value: Any, spec: TensorSpec, name: str,
             bools: Callable[[], bool] = _always) -> np.ndarray:
    """A JSON value (nested lists) as an array of the signature's dtype, or a 400.  True and
    false are no numbers (TF Serving refuses them too), mixed with numbers or not; ``bools``
    says whether the body may hold any where numbers are (else they are not looked for)."""
    dt = DTYPES.get(spec.dtype)
    if dt is None:
        raise BadRequest(f"input '{name}' has dtype {dtype_name(spec.dtype)}, which JSON "
                         "requests cannot carry")
    if dt.numpy == "object":
        if isinstance(value, np.ndarray):  # numbers jsonfast read: refused below as from lists
            value = value.tolist()
        try:
            shaped = np.array(value, dtype=object)
        except (ValueError, RecursionError):
            raise BadRequest(f"input '{name}' is ragged; expected lists of equal lengths") from None
        check_strings(name, shaped.size)
        check_dims(name, _deepest(shaped))
        out = np.empty(shaped.shape, dtype=object)
        out.reshape(-1)[:] = [_one_string(v, name) for v in shaped.reshape(-1)]
        return out
    try:
        a = value if isinstance(value, np.ndarray) else np.array(value)  # jsonfast's: no copy
    except (ValueError, TypeError, RecursionError):
        raise BadRequest(f"input '{name}' is ragged or nested too deeply; expected lists of "
                         "equal lengths, at most 32 deep") from None
    check_dims(name, _deepest(a))  # the rank every protocol allows (numpy's own goes to 64)
    target = np.dtype(dt.numpy)
    if a.size and a.dtype.kind not in _KINDS[target.kind]:
        held = "ragged lists or mixed values" if a.dtype.kind == "O" else \
            _KIND_WORDS.get(a.dtype.kind, "strings")
        raise BadRequest(f"input '{name}' holds {held}; signature input is {dt.name}, expected "
                         f"{_KIND_WORDS[target.kind]} in lists of equal lengths")
    if target.kind != "b" and a.size and not isinstance(value, np.ndarray) and bools() \
            and _holds_bool(value, a):
        raise BadRequest(f"input '{name}' holds true/false values among its numbers; signature "
                         f"input is {dt.name}, expected {_KIND_WORDS[target.kind]} only")
    if target.kind in "iu" and a.size:
        info = np.iinfo(target)
        if a.min() < info.min or a.max() > info.max:
            raise BadRequest(f"input '{name}' has values out of {dt.name}'s range "
                             f"[{info.min}, {info.max}]")
    with np.errstate(over="ignore"):  # float64 past float32's range: inf, as TF would cast
        return a.astype(target)


def _deepest(a: np.ndarray) -> Tuple[int, ...]:
    """``a``'s shape, one deeper when numpy stopped at its own rank limit and kept lists as
    objects (numpy before 1.24 stops at 32 dimensions instead of refusing)."""
    if a.ndim >= MAX_RANK and a.dtype.kind == "O" and a.size and \
            isinstance(a.reshape(-1)[0], (list, tuple)):
        return (*a.shape, 1)
    return tuple(a.shape)


def _given(values: Mapping[str, Any], sig: Signature, body: bytes) -> Dict[str, np.ndarray]:
    check_names(values, sig)  # before converting anything
    bools = once(lambda: bool_words(body) > 0)  # nothing else in a request is true/false
    return feeds_for_signature(
        {k: Given(sig.inputs[k].dtype, to_array(v, sig.inputs[k], k, bools))
         for k, v in values.items()}, sig)


def _rows_format(instances: Any, sig: Signature) -> Dict[str, Any]:
    if not isinstance(instances, (list, np.ndarray)) or not len(instances):
        raise BadRequest('"instances" must be a non-empty list; expected one entry per row')
    names = sorted(sig.inputs)
    if isinstance(instances, list) and all(isinstance(i, dict) and not is_b64(i) for i in instances):
        for inst in instances:
            check_names(inst, sig)
        return {k: [inst[k] for inst in instances] for k in names}
    if len(names) != 1:
        raise BadRequest(f"signature '{sig.name}' has inputs {', '.join(map(repr, names))}; "
                         "expected each instance as an object naming them")
    return {names[0]: instances}


def _columns_format(inputs: Any, sig: Signature) -> Dict[str, Any]:
    if isinstance(inputs, dict) and not is_b64(inputs):
        return inputs
    if len(sig.inputs) != 1:
        raise BadRequest(f"signature '{sig.name}' has inputs "
                         f"{', '.join(map(repr, sorted(sig.inputs)))}; expected \"inputs\" as an "
                         "object naming them")
    return {next(iter(sig.inputs)): inputs}


def _string_values(a: np.ndarray, name: str) -> Any:
    """Strings as TF Serving writes them: text, or ``{"b64": ...}`` for outputs named
    ``*_bytes`` and for bytes that are not UTF-8."""
    force = name.endswith("_bytes")

    def one(v: Any) -> Any:
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        if not force:
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(b).decode("ascii")}

    return np.frompyfunc(one, 1, 1)(a).tolist() if a.ndim else one(a.item())


def _jsonable(a: np.ndarray, name: str) -> Any:
    if a.dtype.kind in "OSU":
        return _string_values(a, name)
    return np.ascontiguousarray(a) if a.ndim else a.item()


def _floats(arrays: List[np.ndarray]) -> List[np.ndarray]:
    return [a for a in arrays if a.dtype.kind == "f"]


class TFServing:
    """The ``Codec`` of ``POST /v1/models/<name>[...]:predict|:classify|:regress``."""

    name = "tfserving"

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded:
        doc = loads(body, 'a JSON object with "instances" or "inputs"', jsonfast.TFSERVING)
        if not isinstance(doc, dict):
            raise BadRequest('body must be a JSON object; expected {"instances": [...]} or '
                             '{"inputs": ...}')
        name = doc.get("signature_name", "")
        if not isinstance(name, str):
            raise BadRequest('"signature_name" must be a string')
        if not name and "serving_default" in model.signatures:
            name = "serving_default"  # TF Serving's default, whatever kind it is
        sig = model.signature(name)
        if call.verb != "predict":
            return self._examples(doc, sig, call.verb)
        if ("instances" in doc) == ("inputs" in doc):
            raise BadRequest('expected exactly one of "instances" (row format) or "inputs" '
                             "(columnar format)")
        if "instances" in doc:
            values = _rows_format(doc["instances"], sig)
            return Decoded(sig, _given(values, sig, body), sorted(sig.outputs),
                           ("row", len(doc["instances"])))
        values = _columns_format(doc["inputs"], sig)
        return Decoded(sig, _given(values, sig, body), sorted(sig.outputs), ("columns", 0))

    def _examples(self, doc: Dict[str, Any], sig: Signature, verb: str) -> Decoded:
        method, fits, gives = _VERBS[verb]
        if sig.method != method and not (_takes_examples(sig) and fits(sig.outputs)):
            inputs, outputs = listed(sorted(sig.inputs)), listed(sorted(sig.outputs))
            raise BadRequest(f"signature '{sig.name}' is not a {verb} signature (method_name "
                             f"{sig.method or 'none'}; inputs {inputs or 'none'}; outputs "
                             f"{outputs or 'none'}); expected method_name {method}, or one "
                             f"DT_STRING input of serialized tf.Example and {gives}; or call "
                             ":predict")
        examples = doc.get("examples")
        if not isinstance(examples, list) or not examples:
            raise BadRequest('"examples" must be a non-empty list of objects (feature: value)')
        context = doc.get("context", {})
        if len(sig.inputs) != 1:
            raise BadRequest(f"signature '{sig.name}' has {len(sig.inputs)} inputs; expected "
                             "one of serialized tf.Example")
        (alias,) = sig.inputs
        serialized = np.empty(len(examples), dtype=object)
        serialized[:] = serialize_examples(examples, context)
        feeds = feeds_for_signature({alias: Given(sig.inputs[alias].dtype, serialized)}, sig)
        return Decoded(sig, feeds, sorted(sig.outputs), (verb, len(examples)))

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]:
        form, rows = decoded.form
        arrays = {k: np.asarray(v) for k, v in outputs.items()}
        if form in ("classify", "regress"):
            return dumps({"results": _results(form, arrays, rows)}, []), dict(JSON)
        names = sorted(arrays)
        if form == "columns":
            values = {k: _jsonable(arrays[k], k) for k in names}
            data = values[names[0]] if len(names) == 1 else values
            return dumps({"outputs": data}, _floats([arrays[k] for k in names])), dict(JSON)
        for k in names:
            if arrays[k].ndim == 0 or arrays[k].shape[0] != rows:
                raise BadRequest(f"output '{k}' has shape {list(arrays[k].shape)}, not one row "
                                 f"per instance ({rows}); use the columnar format "
                                 '({"inputs": ...}) for this signature')
        if len(names) == 1:
            k = names[0]
            return dumps({"predictions": _jsonable(arrays[k], k)},
                         _floats([arrays[k]])), dict(JSON)
        values = {k: _jsonable(arrays[k], k) for k in names}
        predictions = [{k: values[k][i] for k in names} for i in range(rows)]
        order = _floats([arrays[k][i:i + 1] for i in range(rows) for k in names]) \
            if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays.values()) \
            else []
        return dumps({"predictions": predictions}, order), dict(JSON)


def _takes_examples(sig: Signature) -> bool:
    """One input, of strings: serialized tf.Example, as TF Serving feeds them."""
    return len(sig.inputs) == 1 and dtype_name(next(iter(sig.inputs.values())).dtype) == "DT_STRING"


def _classifies(outputs: Mapping[str, TensorSpec]) -> bool:
    """TF Serving's classification outputs: one or two, ``classes`` and/or ``scores``."""
    return 1 <= len(outputs) <= 2 and not {"classes", "scores"}.isdisjoint(outputs)


def _regresses(outputs: Mapping[str, TensorSpec]) -> bool:
    """TF Serving's regression output: ``outputs``, alone."""
    return set(outputs) == {"outputs"}


#: a verb -> the method_name it is exported with, and, for signatures exported otherwise
#: (``tf.saved_model.save`` writes predict on every one), the outputs TF Serving runs it on
#: (its classifier.cc / regressor.cc ``PreProcess*`` checks, method name check off)
_VERBS: Dict[str, Tuple[str, Callable[[Mapping[str, TensorSpec]], bool], str]] = {
    "classify": (CLASSIFY, _classifies, "outputs 'classes' and/or 'scores'"),
    "regress": (REGRESS, _regresses, "one output 'outputs'"),
}


def _results(verb: str, arrays: Dict[str, np.ndarray], rows: int) -> Any:
    if verb == "regress":
        out = arrays.get("outputs")
        if out is None or out.size != rows:
            raise BadRequest("regress signature must give one value per example in 'outputs'")
        return out.reshape(-1).astype(np.float64).tolist()
    scores, classes = arrays.get("scores"), arrays.get("classes")
    either = scores if scores is not None else classes
    if either is None:
        raise BadRequest("classify signature gives neither 'classes' nor 'scores'")
    shape = either.reshape(rows, -1).shape
    labels = classes.reshape(shape) if classes is not None else np.full(shape, b"", dtype=object)
    values = scores.reshape(shape).astype(np.float64) if scores is not None else np.zeros(shape)
    text = np.frompyfunc(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                         1, 1)(labels)
    return [[[str(t), float(s)] for t, s in zip(text[i], values[i])] for i in range(rows)]


__all__ = ["CLASSIFY", "PREDICT", "REGRESS", "TFServing", "is_b64", "once", "to_array"]
