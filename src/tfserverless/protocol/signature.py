"""Signatures (what a model takes and gives), their EAS schema JSON, and the checks every
protocol runs a request through before the model sees it."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._compat import Protocol
from ..errors import BadRequest
from .dtypes import dtype_name
from .text import listed, quote


class TensorSpec(NamedTuple):
    name: str  # the alias clients use
    dtype: int  # ArrayDataType / TF DataType code
    shape: Optional[Tuple[int, ...]]  # None: unknown rank; -1: unknown dimension
    tensor: str = ""  # graph tensor name behind the alias


class Signature(NamedTuple):
    name: str
    inputs: Dict[str, TensorSpec]
    outputs: Dict[str, TensorSpec]
    method: str = ""


DEFAULT_KEY = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def choose_default(signatures: Dict[str, Signature]) -> str:
    """The signature an empty ``signature_name`` means.

    ``serving_default`` when it is a predict signature, else the first predict signature by
    name (TF Serving's MNIST export has a classify ``serving_default`` beside
    ``predict_images``, and EAS answers with ``predict_images``), else ``serving_default``,
    else the first by name.
    """
    if not signatures:
        return ""
    sig = signatures.get(DEFAULT_KEY)
    if sig is not None and sig.method in ("", PREDICT_METHOD):
        return DEFAULT_KEY
    predict = sorted(n for n, s in signatures.items() if s.method == PREDICT_METHOD)
    if predict:
        return predict[0]
    if sig is not None:
        return DEFAULT_KEY
    return sorted(signatures)[0]


def find_signature(signatures: Dict[str, Signature], default: str, name: str) -> Signature:
    """The signature ``name`` names ('' is ``default``); 400 naming the choices otherwise."""
    sig = signatures.get(name or default)
    if sig is None:
        raise BadRequest(
            f"unknown signature_name {quote(name)}; expected one of "
            f"{', '.join(repr(k) for k in sorted(signatures))}"
        )
    return sig


def signature_json(sig: Signature) -> Dict[str, Any]:
    """The structure EAS returns for an empty request."""

    def specs(d: Dict[str, TensorSpec]) -> List[Dict[str, Any]]:
        return [
            {
                "name": s.name,
                "shape": list(s.shape) if s.shape is not None else [],
                "type": dtype_name(s.dtype),
            }
            for s in sorted(d.values(), key=lambda s: s.name)
        ]

    return {"inputs": specs(sig.inputs), "outputs": specs(sig.outputs), "signature_name": sig.name}


def signature_json_bytes(sig: Signature) -> bytes:
    return json.dumps(signature_json(sig), indent=1).encode() + b"\n"




class Incoming(Protocol):
    """An input as a protocol decoded it: its dtype code, and its array on demand (EAS
    decodes the values only once name and dtype have been checked)."""

    dtype: int

    def to_numpy(self, name: str) -> np.ndarray: ...


class Given:
    """An input already decoded to an array (the JSON protocols)."""

    __slots__ = ("array", "dtype")

    def __init__(self, dtype: int, array: np.ndarray) -> None:
        self.dtype, self.array = dtype, array

    def to_numpy(self, name: str) -> np.ndarray:
        return self.array


def check_names(names: Iterable[str], sig: Signature, *, complete: bool = True) -> None:
    """Every name is one of the signature's inputs and, when ``complete``, none is missing."""
    given = set(names)
    unknown = sorted(given - set(sig.inputs))
    if unknown:
        raise BadRequest(
            f"unknown input {listed(unknown)} for signature '{sig.name}'; "
            f"expected {_names(sig.inputs)}"
        )
    missing = sorted(set(sig.inputs) - given)
    if complete and missing:
        raise BadRequest(
            f"missing input {listed(missing)} for signature '{sig.name}'; "
            f"expected {_names(sig.inputs)}"
        )


def feeds_for_signature(inputs: Mapping[str, Incoming], sig: Signature) -> Dict[str, np.ndarray]:
    """Check names and dtypes against the signature and build the input arrays.

    Not shapes: as TF Serving, a tensor whose shape differs from the signature's declared one
    goes to the model, which answers it (half_plus_two takes ``[3]`` against ``[-1, 1]``) or
    refuses it (the backend's one-line 400).  Every size limit holds before this (each
    protocol's decoder bounds dims, elements and bytes before it allocates)."""
    check_names(inputs, sig)
    feeds = {}
    for name, wire in inputs.items():
        spec = sig.inputs[name]
        if wire.dtype != spec.dtype:
            raise BadRequest(
                f"input '{name}' has dtype {dtype_name(wire.dtype)}; "
                f"signature '{sig.name}' expects {dtype_name(spec.dtype)}"
            )
        feeds[name] = wire.to_numpy(name)
    return feeds


def fits_shape(got: Tuple[int, ...], want: Optional[Tuple[int, ...]]) -> bool:
    """Whether shape ``got`` is one the signature declared (``want``; None: any rank, -1: any
    size) but for the first (batch) dimension: what rows of requests may be stacked along."""
    if want is None:
        return True
    return len(got) == len(want) and all(w < 0 or g == w for g, w in zip(got[1:], want[1:]))


def output_names(requested: Sequence[str], sig: Signature, what: str = "output_filter") -> List[str]:
    """The outputs to compute: ``requested`` (all when empty), each checked."""
    if not requested:
        return sorted(sig.outputs)
    unknown = [f for f in requested if f not in sig.outputs]
    if unknown:
        raise BadRequest(
            f"unknown {what} {listed(unknown)} for signature "
            f"'{sig.name}'; expected {_names(sig.outputs)}"
        )
    return sorted(set(requested))


def _names(d: Dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in sorted(d)) or "none"
