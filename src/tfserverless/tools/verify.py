"""Checking a converted model against TensorFlow: the inputs both run, how far apart the
outputs are, and whether that is within the tolerance asked for.  No runtime is imported
here: both models come in through the ``Servable`` seam and run the way traffic runs them."""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, NamedTuple, Sequence, Tuple

import numpy as np

from ..backends.servable import Servable
from ..errors import TFServerlessError
from ..protocol.dtypes import DTYPES
from ..protocol.signature import Signature, TensorSpec

UNKNOWN_DIM = 3  # what an unknown non-batch dimension becomes in the random inputs


class Case(NamedTuple):
    sig: Signature
    feeds: Dict[str, np.ndarray]
    outputs: List[str]
    source: str  # "random batch 8", "warm-up request 2"


class Error(NamedTuple):
    max_abs: float
    max_rel: float
    mismatches: int  # elements beyond the tolerance (any difference for non-float outputs)


def _shape(spec: TensorSpec, batch: int) -> Tuple[int, ...]:
    if spec.shape is None:
        return (batch,)
    return tuple((batch if i == 0 else UNKNOWN_DIM) if d < 0 else d
                 for i, d in enumerate(spec.shape))


def _values(spec: TensorSpec, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    kind = np.dtype(DTYPES[spec.dtype].numpy)
    if kind == np.dtype(object):
        digits = rng.integers(0, 1000, size=shape)
        return np.array([str(d).encode() for d in digits.ravel()], dtype=object).reshape(shape)
    if kind.kind == "f":
        return rng.standard_normal(shape).astype(kind)
    if kind.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, size=shape).astype(kind)  # small: safe as indices and counts


def _batched(sig: Signature) -> bool:
    """Whether every input has a leading unknown dimension (a batch to vary)."""
    return all(s.shape is None or (len(s.shape) > 0 and s.shape[0] < 0) for s in sig.inputs.values())


def random_cases(sig: Signature, batch_sizes: Sequence[int], seed: int) -> Iterator[Case]:
    """Deterministic random inputs: each batch size if the signature is batched, else once."""
    rng = np.random.default_rng(seed)
    for batch in (batch_sizes if _batched(sig) else batch_sizes[:1]):
        feeds = {n: _values(s, _shape(s, batch), rng) for n, s in sorted(sig.inputs.items())}
        yield Case(sig, feeds, sorted(sig.outputs), f"random batch {batch}" if _batched(sig)
                   else "random input")


def compare(want: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> Error:
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape:
        return Error(float("inf"), float("inf"), max(want.size, got.size, 1))
    if want.size == 0:
        return Error(0.0, 0.0, 0)
    if want.dtype.kind in "fc":
        w, g = np.atleast_1d(want.astype(np.float64)), np.atleast_1d(got.astype(np.float64))
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, 0 * inf: handled below
            same = (w == g) | (np.isnan(w) & np.isnan(g))
            diff = np.abs(w - g)
            diff[same] = 0.0
            diff[np.isnan(diff)] = np.inf  # NaN on one side only
            limit = atol + rtol * np.abs(w)
            limit[~np.isfinite(limit)] = atol
            rel = diff / np.maximum(np.abs(w), np.finfo(np.float64).tiny)
            rel[same] = 0.0
        bad = int(np.count_nonzero(diff > limit))
        return Error(float(diff.max()), float(np.nan_to_num(rel, nan=np.inf).max()), bad)
    bad = int(np.count_nonzero(want != got))
    return Error(float(bad > 0), float(bad > 0), bad)


class Refused(TFServerlessError):
    """Conversion refused: exit 2 with one line."""

    status = 400


def verify(reference: Servable, candidate: Servable, cases: Sequence[Case], *,
           atol: float, rtol: float) -> Dict[str, Any]:
    """Run every case through both: the worst error per signature and output.  Raises
    ``Refused`` naming the first output beyond tolerance, a case LiteRT refuses that
    TensorFlow takes, or a signature no case could check."""
    report: Dict[str, Any] = {}
    rejected: Dict[str, str] = {}
    for case in cases:
        name = case.sig.name
        try:
            want = reference.run(case.sig, case.feeds, case.outputs)
        except TFServerlessError as e:  # TensorFlow refuses this input: nothing to compare
            rejected.setdefault(name, e.message)
            continue
        try:
            got = candidate.run(case.sig, case.feeds, case.outputs)
        except TFServerlessError as e:
            raise Refused(f"signature {name!r}: LiteRT fails on {case.source}, which TensorFlow "
                          f"runs: {e.message}") from None
        entry = report.setdefault(name, {"cases": [], "outputs": {}})
        entry["cases"].append(case.source)
        for out in case.outputs:
            err = compare(want[out], got[out], atol, rtol)
            worst = entry["outputs"].setdefault(out, {"max_abs": 0.0, "max_rel": 0.0})
            worst["max_abs"] = max(worst["max_abs"], err.max_abs)
            worst["max_rel"] = max(worst["max_rel"], err.max_rel)
            if err.mismatches:
                raise Refused(
                    f"signature {name!r} output {out!r} differs from TensorFlow's on "
                    f"{case.source}: max abs error {err.max_abs:.3g} (rel {err.max_rel:.3g}) in "
                    f"{err.mismatches} element(s), beyond --atol {atol:g} + --rtol {rtol:g} x "
                    "|expected|; expected a looser tolerance or no quantization")
    unchecked = sorted({c.sig.name for c in cases} - set(report))
    if unchecked:
        name = unchecked[0]
        raise Refused(f"signature {name!r} could not be verified: TensorFlow rejects its random "
                      f"inputs ({rejected.get(name, 'no case ran')}); expected warm-up requests "
                      "it accepts (--warmup FILE, or the SavedModel's assets.extra)")
    return report


def speed(model: Servable, case: Case, *, repeat: int = 20) -> float:
    """Median seconds per call of ``case`` (after one untimed call)."""
    model.run(case.sig, case.feeds, case.outputs)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.run(case.sig, case.feeds, case.outputs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


__all__ = ["Case", "Error", "Refused", "compare", "random_cases", "speed", "verify"]
