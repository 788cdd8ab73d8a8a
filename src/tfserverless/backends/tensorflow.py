"""The only module that imports TensorFlow, and only when a model is loaded.

One code path for TensorFlow 1.12 .. 2.x: the SavedModel's MetaGraph is loaded into a
graph-mode session (as TF Serving does), its ``signature_def`` map gives the aliases, and each
(signature, outputs) pair gets a cached ``Session.make_callable`` so a request costs one call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np

from ..errors import BadRequest, ModelError, ModelUnavailable, first_line
from ..protocol.signature import Signature, TensorSpec, choose_default, find_signature

log = logging.getLogger("tfserverless.backends.tensorflow")

INIT_OP_KEY = "__saved_model_init_op"


def tensorflow_module(*, quiet: bool = False) -> Any:
    """TensorFlow, imported on first call: it takes seconds and must happen in the serving
    worker, after gunicorn forks, never at package import.  ``quiet``: its C++ and Python
    logs at errors only (deploy-time tools)."""
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if quiet:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf


class _NoDeprecationNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "deprecated" not in str(record.msg)


@contextlib.contextmanager
def without_deprecation_notes() -> Iterator[None]:
    """TensorFlow's "... is deprecated and will be removed" notes (its ``tensorflow`` logger)
    dropped while our own call runs; other threads' notes too, for that moment only."""
    logger = logging.getLogger("tensorflow")
    note = _NoDeprecationNotes()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def tf_version() -> str:
    return str(tensorflow_module().__version__)


def _spec(alias: str, info: Any) -> TensorSpec:
    shape: Optional[Tuple[int, ...]]
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) if d.size >= 0 else -1 for d in info.tensor_shape.dim)
    return TensorSpec(alias, int(info.dtype), shape, str(info.name))


def signatures_from_meta_graph(meta: Any) -> Dict[str, Signature]:
    out = {}
    for key, sd in meta.signature_def.items():
        if key == INIT_OP_KEY:
            continue
        if any(not i.name for i in list(sd.inputs.values()) + list(sd.outputs.values())):
            log.warning("signature %r uses composite (sparse/ragged) tensors; not served", key)
            continue
        out[str(key)] = Signature(
            str(key),
            {str(a): _spec(a, i) for a, i in sd.inputs.items()},
            {str(a): _spec(a, i) for a, i in sd.outputs.items()},
            str(sd.method_name),
        )
    return out


def _read_tag_sets(path: str) -> List[List[str]]:
    tf = tensorflow_module()
    from tensorflow.core.protobuf import saved_model_pb2  # same deferral as tensorflow_module

    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(pb, "rb") if hasattr(tf, "io") and hasattr(tf.io, "gfile") else open(
        pb, "rb"
    ) as f:
        data = f.read()
    try:
        sm.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError (its module moved between releases)
        raise ModelUnavailable(f"{pb} is not a SavedModel ({type(e).__name__}: the file does "
                               "not parse); expected a saved_model.pb that TensorFlow wrote",
                               retry_after=60) from None
    return [list(m.meta_info_def.tags) for m in sm.meta_graphs]


def configure_devices(tf: Any, config_proto: Any, *, processor: str = "",
                      cuda_visible_devices: Optional[str] = None) -> List[str]:
    """Let several workers share a GPU (memory growth / ``allow_growth``), report the devices
    TensorFlow sees (it honours ``CUDA_VISIBLE_DEVICES`` itself), and say in one line when a
    GPU processor finds no GPU: it then serves on the CPU instead of failing."""
    config_proto.gpu_options.allow_growth = True
    devices: List[str] = []
    try:
        cfg = getattr(tf, "config", None)
        lister = getattr(cfg, "list_physical_devices", None) or getattr(
            getattr(cfg, "experimental", None), "list_physical_devices", None)
        if lister is not None:
            for gpu in lister("GPU"):
                with contextlib.suppress(RuntimeError, ValueError):  # already initialised
                    tf.config.experimental.set_memory_growth(gpu, True)
            devices = [str(d.name) for d in lister()]
        else:  # TF < 1.14
            from tensorflow.python.client import device_lib  # same deferral as tensorflow_module

            devices = [str(d.name) for d in device_lib.list_local_devices(config_proto)]
    except Exception as e:  # device probing must never stop a CPU load
        log.warning("could not list devices: %s", e)
    if "gpu" in processor and not any("GPU" in d.upper() for d in devices):
        log.warning("processor %s found no GPU (CUDA_VISIBLE_DEVICES=%s); serving on CPU",
                    processor, "unset" if cuda_visible_devices is None else repr(cuda_visible_devices))
    return devices


def make_session_callable(session: Any, feeds: List[str], fetches: List[str]) -> Callable[..., List[Any]]:
    """One C++ ``Session::MakeCallable`` per (feeds, fetches): no per-call graph lookups.

    ``make_callable`` with a feed list falls back to ``Session.run``'s Python feed handling on
    every call; ``CallableOptions`` (TF >= 1.5, so every processor) goes straight to C++.
    """
    from tensorflow.core.protobuf import config_pb2  # same deferral as tensorflow_module

    maker = getattr(session, "_make_callable_from_options", None)
    if maker is None:  # pragma: no cover - no supported TensorFlow lacks it
        made: Callable[..., List[Any]] = session.make_callable(fetches, feed_list=feeds)
        return made
    opts = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
    fn = maker(opts)

    run: Callable[..., List[Any]] = fn
    return run


class Model:
    """A loaded SavedModel: its signatures and a thread-safe ``run``."""

    def __init__(
        self,
        path: str,
        signatures: Dict[str, Signature],
        session: Any,
        *,
        tf_version: str = "",
        devices: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.signatures = signatures
        self.default_signature = choose_default(signatures)
        self.session = session
        self.tf_version = tf_version
        self.runtime = f"tensorflow {tf_version}"
        self.devices = list(devices)
        self._callables: Dict[Tuple[str, Tuple[str, ...]], Callable[..., List[Any]]] = {}
        self._lock = threading.Lock()
        self.import_seconds = 0.0
        self.load_seconds = 0.0
        # (errors that are the input's: a 400, any other of TensorFlow's: a 501); set on load
        self._errors: Tuple[Tuple[Type[BaseException], ...], Type[BaseException]] = ((), Exception)

    @classmethod
    def load(cls, path: str, *, intra_op_threads: int = 0, inter_op_threads: int = -1,
             processor: str = "", cuda_visible_devices: Optional[str] = None) -> Model:
        """Load the SavedModel at ``path``.

        ``inter_op_threads=-1`` runs each request's ops in the calling thread (TF >= 1.13):
        for serving graphs on one or two vCPUs this halves the per-request cost of small
        batches, since no thread hand-off happens; 0 is TensorFlow's default pool.
        """
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ModelUnavailable(f"no saved_model.pb in {path}; expected a SavedModel directory")
        t0 = time.monotonic()
        tf = tensorflow_module()
        t_import = time.monotonic() - t0
        v1 = tf.compat.v1 if hasattr(tf, "compat") and hasattr(tf.compat, "v1") else tf
        tag_sets = _read_tag_sets(path)
        tags = next((t for t in tag_sets if "serve" in t), tag_sets[0] if tag_sets else ["serve"])
        graph = tf.Graph()
        if inter_op_threads < 0 and _version_tuple(tf.__version__) < (1, 13):
            inter_op_threads = 0  # older sessions cannot run ops in the caller thread
        config = v1.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                                inter_op_parallelism_threads=inter_op_threads)
        devices = configure_devices(tf, config, processor=processor,
                                    cuda_visible_devices=cuda_visible_devices)
        session = v1.Session(graph=graph, config=config)
        try:
            # TensorFlow 2 marks its graph-mode loader deprecated (in favour of the object
            # loader, which gives no Session); it is what every version from 1.12 has
            with graph.as_default(), without_deprecation_notes():
                meta = v1.saved_model.loader.load(session, tags, path)
        except Exception as e:
            session.close()
            raise ModelUnavailable(
                f"TensorFlow {tf.__version__} cannot load the SavedModel at {path}: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        sigs = signatures_from_meta_graph(meta)
        if not sigs:
            raise ModelUnavailable(f"the SavedModel at {path} has no servable signature")
        model = cls(path, sigs, session, tf_version=str(tf.__version__), devices=devices)
        model.import_seconds = t_import
        model.load_seconds = time.monotonic() - t0 - t_import
        model._errors = (tuple(getattr(tf.errors, n) for n in INPUT_ERRORS), tf.errors.OpError)
        log.debug(  # at INFO the worker's cold-start line says it, the startup line the rest
            "loaded %s with TensorFlow %s (import %.2fs, load %.2fs): signatures %s, default %r, "
            "devices %s",
            path, tf.__version__, t_import, time.monotonic() - t0 - t_import,
            sorted(sigs), model.default_signature, devices or ["CPU"],
        )
        return model

    def signature(self, name: str) -> Signature:
        return find_signature(self.signatures, self.default_signature, name)

    def _callable(self, sig: Signature, outputs: Tuple[str, ...]) -> Callable[..., List[Any]]:
        key = (sig.name, outputs)
        fn = self._callables.get(key)
        if fn is None:
            with self._lock:
                fn = self._callables.get(key)
                if fn is None:
                    feeds = [sig.inputs[n].tensor for n in sorted(sig.inputs)]
                    fetches = [sig.outputs[n].tensor for n in outputs]
                    fn = make_session_callable(self.session, feeds, fetches)
                    self._callables[key] = fn
        return fn

    def run(
        self, sig: Signature, feeds: Dict[str, np.ndarray], outputs: Sequence[str]
    ) -> Dict[str, np.ndarray]:
        names = tuple(outputs)
        args = [feeds[n] for n in sorted(sig.inputs)]
        invalid, op_error = self._errors
        try:
            values = self._callable(sig, names)(*args)
        except invalid as e:
            raise BadRequest(f"the model rejected the input: {op_line(e)}") from e
        except op_error as e:
            raise ModelError(f"the model failed: {op_line(e)}") from e
        return {n: np.asarray(v) for n, v in zip(names, values)}

    def close(self) -> None:
        self.session.close()


#: TensorFlow's errors that are the input's (a shape the graph cannot take, a value out of
#: range): a 400, as TF Serving answers them; every other OpError is the model's (a 501)
INPUT_ERRORS = ("InvalidArgumentError", "OutOfRangeError")
#: TensorFlow 1.x's head line when ops failed in parallel; the first error is on the next line
_ROOT_ERRORS = re.compile(r"\d+ root error\(s\) found\.?")
#: "(0) Invalid argument: " before each of those; "{{function_node ...}}" before a function's
_NOISE = re.compile(r"^(?:\(\d+\)\s*|\{\{[^{}]*\}\}\s*)+")
#: a reply quotes this much of TensorFlow's line at most (some name every node of a graph)
MAX_LINE = 300


def op_line(e: BaseException) -> str:
    """A TensorFlow error in one line for a reply: its first line that says something (not
    "2 root error(s) found."), without the node and function names it is wrapped in, cut at
    ``MAX_LINE`` characters; never a stack or a graph dump."""
    text = str(getattr(e, "message", None) or e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and _ROOT_ERRORS.fullmatch(lines[0]):
        lines = lines[1:]
    line = _NOISE.sub("", lines[0]) if lines else ""
    if not line:
        return first_line(e, named=True)
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + "..."


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for p in version.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


