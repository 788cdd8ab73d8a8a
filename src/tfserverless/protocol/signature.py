"""Signatures (what a model takes and gives), their EAS schema JSON, and the checks every
protocol runs a request through before the model sees it."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._compat import Protocol
from ..errors import BadRequest
from .dtypes import dtype_name


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
            f"unknown input {', '.join(repr(u) for u in unknown)} for signature '{sig.name}'; "
            f"expected {_names(sig.inputs)}"
        )
    missing = sorted(set(sig.inputs) - given)
    if complete and missing:
        raise BadRequest(
            f"missing input {', '.join(repr(m) for m in missing)} for signature '{sig.name}'; "
            f"expected {_names(sig.inputs)}"
        )


def feeds_for_signature(inputs: Mapping[str, Incoming], sig: Signature) -> Dict[str, np.ndarray]:
    """Check names, dtypes and shapes against the signature and build the input arrays."""
    check_names(inputs, sig)
    feeds = {}
    for name, wire in inputs.items():
        spec = sig.inputs[name]
        if wire.dtype != spec.dtype:
            raise BadRequest(
                f"input '{name}' has dtype {dtype_name(wire.dtype)}; "
                f"signature '{sig.name}' expects {dtype_name(spec.dtype)}"
            )
        arr = wire.to_numpy(name)
        check_shape(name, arr.shape, spec.shape)
        feeds[name] = arr
    return feeds


def check_shape(name: str, got: Tuple[int, ...], want: Optional[Tuple[int, ...]]) -> None:
    if want is None:
        return
    if len(got) != len(want) or any(w >= 0 and g != w for g, w in zip(got, want)):
        raise BadRequest(
            f"input '{name}' has shape {list(got)}; expected {list(want)} (-1: any size)"
        )


def output_names(requested: Sequence[str], sig: Signature, what: str = "output_filter") -> List[str]:
    """The outputs to compute: ``requested`` (all when empty), each checked."""
    if not requested:
        return sorted(sig.outputs)
    unknown = [f for f in requested if f not in sig.outputs]
    if unknown:
        raise BadRequest(
            f"unknown {what} {', '.join(repr(u) for u in unknown)} for signature "
            f"'{sig.name}'; expected {_names(sig.outputs)}"
        )
    return sorted(set(requested))


def _names(d: Dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in sorted(d)) or "none"
