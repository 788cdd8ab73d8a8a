"""The LiteRT backend: the only module that imports the LiteRT runtime, and only on load.

A directory written by ``tfserverless convert`` holds ``model.tflite`` (every converted
signature, with signature runners) and ``litert.json`` (the manifest: the SavedModel's own
signatures, aliases, dtypes and shapes, so clients see the same schema as on TensorFlow).
Interpreters are not thread-safe, so each concurrent call takes one from a pool (made on first
need, at most one per CPU: more would not run faster, and XNNPACK packs the weights once per
interpreter) and resizes its inputs to the request's shape.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..errors import BadRequest, ModelUnavailable, first_line
from ..protocol.signature import Signature, choose_default, find_signature
from .litert_manifest import MANIFEST, read_manifest, signatures_from_manifest

log = logging.getLogger("tfserverless.backends.litert")



def _runtime() -> Tuple[Any, str]:
    # Deferred: the interpreter is imported in the serving worker, after gunicorn forks.
    # ai-edge-litert has wheels for Python 3.9+; tflite-runtime is LiteRT's older name (3.7/3.8).
    try:
        from ai_edge_litert import interpreter

        return interpreter.Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as old

        return old.Interpreter, "tflite-runtime"
    except ImportError:
        raise ModelUnavailable("this model was converted for LiteRT, but no LiteRT runtime is "
                               "installed; expected `pip install ai-edge-litert` (Python 3.9+) "
                               "or tflite-runtime") from None


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
    except ImportError:  # Python 3.7
        return "unknown"
    try:
        return version(dist)
    except Exception:
        return "unknown"


class LiteModel:
    """A converted model: the manifest's signatures and a thread-safe ``run``."""

    def __init__(self, path: str, signatures: Dict[str, Signature], make: Any,
                 runtime: str = "", max_interpreters: int = 0) -> None:
        self.path = path
        self.signatures = signatures
        self.default_signature = choose_default(signatures)
        self.tf_version = ""
        self.runtime = runtime
        self._make = make  # () -> a fresh interpreter
        self._free: List[Any] = []
        self._made = 0
        self._max = max_interpreters or os.cpu_count() or 1
        self._lock = threading.Condition()
        self._runners: Dict[Tuple[int, str], _Runner] = {}
        self._last: Dict[int, _Last] = {}
        self.import_seconds = 0.0
        self.load_seconds = 0.0
        self.manifest: Dict[str, Any] = {}

    @classmethod
    def load(cls, path: str, *, threads: int = 0, **_ignored: Any) -> LiteModel:
        manifest = read_manifest(path)
        model_file = os.path.join(path, str(manifest.get("model", "model.tflite")))
        if os.path.dirname(os.path.abspath(model_file)) != os.path.abspath(path):
            raise ModelUnavailable(f"{MANIFEST}: model {manifest.get('model')!r} must be a file "
                                   "beside the manifest")
        sigs = signatures_from_manifest(manifest)
        t0 = time.monotonic()
        interpreter, dist = _runtime()
        t_import = time.monotonic() - t0
        kwargs: Dict[str, Any] = {"model_path": model_file}
        if threads > 0:
            kwargs["num_threads"] = threads

        def make() -> Any:
            return interpreter(**kwargs)

        try:
            first = make()
            listed = first.get_signature_list()
        except Exception as e:
            raise ModelUnavailable(f"LiteRT cannot load {model_file}: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}") from None
        for key, sig in sorted(sigs.items()):  # else every request would be a misleading 400
            have = listed.get(key)
            want = {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}
            if have is None or any(sorted(have.get(k, [])) != v for k, v in want.items()):
                raise ModelUnavailable(
                    f"{model_file} does not match {MANIFEST} for signature {key!r} (LiteRT has "
                    f"{have and {k: sorted(have.get(k, [])) for k in want}}, the manifest {want}); "
                    "expected the pair `tfserverless convert` wrote")
        model = cls(path, sigs, make, f"{dist} {_version(dist)}")
        model.manifest = manifest
        model._free.append(first)
        model._made = 1
        model.import_seconds = t_import
        model.load_seconds = time.monotonic() - t0 - t_import
        log.debug("loaded %s with LiteRT (%s; import %.2fs, load %.2fs): signatures %s, default %r",
                 model_file, model.runtime, t_import, model.load_seconds, sorted(sigs),
                 model.default_signature)
        return model

    def signature(self, name: str) -> Signature:
        return find_signature(self.signatures, self.default_signature, name)

    def _take(self) -> Any:
        """A free interpreter; a new one while fewer than the cap exist; else wait for one."""
        with self._lock:
            while not self._free and self._made >= self._max:
                self._lock.wait()
            if self._free:
                return self._free.pop()
            self._made += 1
        try:
            return self._make()
        except BaseException:
            with self._lock:
                self._made -= 1
                self._lock.notify()
            raise

    def _give(self, interp: Any) -> None:
        with self._lock:
            self._free.append(interp)
            self._lock.notify()

    def _runner(self, interp: Any, key: str) -> _Runner:
        runner = self._runners.get((id(interp), key))
        if runner is None:
            last = self._last.setdefault(id(interp), _Last())
            runner = _Runner(interp.get_signature_runner(key), key, last)
            self._runners[(id(interp), key)] = runner
        return runner

    def run(self, sig: Signature, feeds: Dict[str, np.ndarray],
            outputs: Sequence[str]) -> Dict[str, np.ndarray]:
        for n, v in feeds.items():
            _check_rank(sig, n, v)
        args = {n: _for_litert(v) for n, v in feeds.items()}
        interp = self._take()
        try:
            result = self._runner(interp, sig.name)(args)
        except (RuntimeError, ValueError) as e:  # LiteRT's words for shapes/values it refuses
            raise BadRequest(f"the model rejected the input: {_readable(first_line(e))}") from None
        finally:
            self._give(interp)
        return {n: _from_litert(result[n]) for n in outputs}

    def close(self) -> None:
        with self._lock:
            self._free.clear()
            self._runners.clear()


class _Last:
    """What an interpreter last ran: (signature, input shapes); None when unknown."""

    def __init__(self) -> None:
        self.ran: Any = None


class _Runner:
    """A signature runner that skips resizing and re-planning memory when its interpreter last
    ran this signature with these shapes (LiteRT's runner redoes both on every call: ~10 us of
    a batch-1 MNIST call's ~25).  Runtimes without the runner's internals take its public call."""

    def __init__(self, runner: Any, key: str, last: _Last) -> None:
        self.runner = runner
        self.key = key
        self.last = last  # shared by every runner of one interpreter
        try:
            self._wrapper = runner._interpreter_wrapper
            self._inputs = dict(runner._inputs)
            self._outputs = list(runner._outputs)
            self._subgraph = runner._subgraph_index
        except AttributeError:
            self._wrapper = None

    def __call__(self, args: Dict[str, np.ndarray]) -> Dict[str, Any]:
        ran = (self.key, {n: v.shape for n, v in args.items()})
        if self._wrapper is None or ran != self.last.ran:
            self.last.ran = None  # a failed call leaves the tensors in an unknown state
            result: Dict[str, Any] = self.runner(**args)
            self.last.ran = ran
            return result
        w, sub = self._wrapper, self._subgraph
        for name, value in args.items():
            w.SetTensor(self._inputs[name], value, sub)
        w.Invoke(sub)
        return {name: w.GetTensor(index, sub) for name, index in self._outputs}


def _check_rank(sig: Signature, name: str, v: np.ndarray) -> None:
    """LiteRT resizes an input to the request's dimensions (its kernels then take or refuse
    them), but not to another rank than the signature's: some kernels abort the process on one
    (ADD at rank 10, measured), where TensorFlow answers or refuses.  So a one-line 400."""
    want = sig.inputs[name].shape
    if want is not None and v.ndim != len(want):
        raise BadRequest(f"input '{name}' has shape {list(v.shape)}, rank {v.ndim}; this LiteRT "
                         f"model takes rank {len(want)} ({list(want)}; -1: any size): it "
                         "resizes dimensions, not ranks")


#: where LiteRT's error reporter ran its messages together ("...runtimeNode number 2 (...)")
_PARTS = re.compile(r"(?<=\S)(?=Node number \d+ \()|(?<=[^\w/\s])(?=[\w/]+\.cc:\d+ )")


def _readable(text: str) -> str:
    """LiteRT's messages, one after another, each said once."""
    return "; ".join(p.strip() for p in _PARTS.split(text) if p.strip())


def _for_litert(v: np.ndarray) -> np.ndarray:
    # LiteRT takes C-contiguous buffers; object arrays of bytes are its strings as they are
    return v if v.flags.c_contiguous else np.ascontiguousarray(v)


def _from_litert(v: Any) -> np.ndarray:
    return np.asarray(v)  # strings come back as object arrays of bytes, as the codecs take them




__all__ = ["LiteModel"]

