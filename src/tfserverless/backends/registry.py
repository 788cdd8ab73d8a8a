"""Which backend a model asks for, and the cold start's fetch -> import -> load: the fetched
directory's marker file picks the backend (a ``litert.json`` from ``tfserverless convert``,
else a SavedModel for TensorFlow); the engine's runtime is imported in a thread while the
model downloads (``Preimport``), so a cold start costs about max(fetch, import) + load."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..config import Config
from .servable import Servable

log = logging.getLogger("tfserverless")


def _load_tensorflow(path: str, config: Config) -> Servable:
    from .tensorflow import Model

    return Model.load(path, intra_op_threads=config.intra_op_threads,
                      inter_op_threads=config.inter_op_threads, processor=config.processor,
                      cuda_visible_devices=config.cuda_visible_devices)


def _load_litert(path: str, config: Config) -> Servable:
    from .litert import LiteModel

    return LiteModel.load(path, threads=config.intra_op_threads)


# What the fetched directory holds -> (runtime, backend); the first marker present wins.  Each
# backend imports its runtime only when it loads.
BACKENDS: Tuple[Tuple[str, str, Callable[[str, Config], Servable]], ...] = (
    ("litert.json", "LiteRT", _load_litert),  # `tfserverless convert` output
    ("saved_model.pb", "TensorFlow", _load_tensorflow),
)


def backend_for(path: str) -> Tuple[str, Callable[[str, Config], Servable]]:
    """(runtime name, loader) for the model directory at ``path``."""
    return next(((runtime, load) for marker, runtime, load in BACKENDS
                 if os.path.isfile(os.path.join(path, marker))), BACKENDS[-1][1:])


#: the runtime a processor's models need, imported while the model downloads
RUNTIME_MODULES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "litert_cpu": ("LiteRT", ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"))}
TENSORFLOW: Tuple[str, Tuple[str, ...]] = ("TensorFlow", ("tensorflow",))


class Preimport:
    """Imports the engine's runtime (TensorFlow's ~2 s) in a thread while the model is
    fetched, so a cold start costs about max(fetch, import) + load, not their sum; whichever
    backend then loads finds the module imported (or waits for the import to finish)."""

    def __init__(self, config: Config) -> None:
        self.seconds = 0.0
        self.runtime, self._modules = RUNTIME_MODULES.get(config.processor, TENSORFLOW)
        self._thread = threading.Thread(target=self._run, name="preimport", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        for name in self._modules:
            try:
                importlib.import_module(name)
                break
            except Exception:  # not installed here (or broken): the backend will say so
                continue
        self.seconds = time.monotonic() - t0

    def hidden(self, runtime: str, waited: float) -> float:
        """Seconds of ``runtime``'s import the fetch hid (the backend then ``waited`` for the
        rest); none when the model turned out to need another runtime."""
        if runtime != self.runtime:
            return 0.0
        self._thread.join(0.5)  # it ended when the backend's own import returned
        return max(0.0, self.seconds - waited)


def load_model(config: Config, phases: Optional[Dict[str, float]] = None) -> Servable:
    """Fetch (or reuse) the model and load it with the backend its files call for; logs the
    one-line cold-start timeline and puts its phases' seconds in ``phases``."""
    from .. import storage

    t0 = time.monotonic()
    path = config.require_model_path()
    remote = "://" in path and not path.startswith("file://")
    pre: List[Preimport] = []

    def opened() -> None:  # the engine imports while the model downloads (local: no download)
        if remote:  # not before: the store's SDK then took 1.9 s to open an S3 source, not 0.24
            pre.append(Preimport(config))

    fetched = storage.fetch_model(config, opened)
    runtime, load = backend_for(fetched.path)
    model = load(fetched.path, config)
    seconds = model.import_seconds, model.load_seconds
    hidden = pre[0].hidden(runtime, seconds[0]) if pre else 0.0
    if phases is not None:
        phases.update(fetch=fetched.seconds, tf_import=seconds[0], load=seconds[1],
                      fetch_bytes=fetched.nbytes, fetch_connections=fetched.connections,
                      fetch_parts_retried=fetched.retried)
    if fetched.cached:
        fetch = "cached"
    else:
        fetch = (f"{fetched.seconds:.2f}s ({fetched.nbytes / 1e6:.1f} MB, "
                 f"{fetched.nbytes / 1e6 / max(fetched.seconds, 1e-6):.1f} MB/s, "
                 f"{fetched.connections} connection{'' if fetched.connections == 1 else 's'}, "
                 f"{fetched.retried} parts retried)")
    log.info(
        "cold start: fetch+extract %s, %s import %.2fs (%.2fs more hidden behind the fetch), "
        "load %.2fs, total %.2fs",
        fetch, runtime, seconds[0], hidden, seconds[1], time.monotonic() - t0,
    )
    return model


__all__ = ["BACKENDS", "Preimport", "backend_for", "load_model"]
