"""Wiring shared by every entry point: environment -> Config -> Service."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from ..backends.holder import ModelHolder, Servable
from ..config import Config
from ..errors import ConfigError
from .service import Service

log = logging.getLogger("tfserverless")


def setup_logging(level: str) -> None:
    root = logging.getLogger("tfserverless")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def _load_tensorflow(path: str, config: Config) -> Servable:
    from ..backends.tensorflow import Model

    return Model.load(path, intra_op_threads=config.intra_op_threads,
                      inter_op_threads=config.inter_op_threads, processor=config.processor,
                      cuda_visible_devices=config.cuda_visible_devices)


def _load_litert(path: str, config: Config) -> Servable:
    from ..backends.litert import LiteModel

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


def create_service(environ: Mapping[str, str], *, config: Optional[Config] = None) -> Service:
    config = config or Config.from_environ(environ)
    setup_logging(config.log_level)
    config.require_model_path()
    phases: Dict[str, float] = {}

    def load() -> Servable:
        try:
            return load_model(config, phases)
        except Exception:
            service.metrics.load(False)
            raise

    holder = ModelHolder(load, wait=config.load_timeout)
    service = Service(config, holder)

    def warm_up(model: Servable) -> None:  # readiness waits for the warm-up
        from .. import storage
        from . import warmup

        t0 = time.monotonic()
        try:
            warmup.replay(config, model, service.predictor.run_predict, storage.read_bytes,
                          service.warmup)
        except Exception:
            service.metrics.load(False)
            raise
        phases["warm_up"] = time.monotonic() - t0
        service.metrics.load(True, phases)
        # TensorFlow leaves ~10^6 long-lived objects; a full collection walking them all
        # stalls every request in flight for ~100 ms.  Frozen, collections skip them.
        if hasattr(gc, "freeze"):
            gc.collect()
            gc.freeze()

    holder.after_load.append(warm_up)
    return service


def create_service_or_exit(environ: Mapping[str, str]) -> Service:
    """For deployable entry points: a bad setting stops the start with one line, exit 2."""
    try:
        service = create_service(environ)
        path = service.config.model_path
        if path and "://" not in path and not os.path.exists(path):  # remote: lazy, retried
            raise ConfigError(f"MODEL_PATH={path!r} does not exist; expected a local SavedModel "
                              "directory or archive, or an oss:// s3:// gs:// http(s):// URL")
        return service
    except ConfigError as e:
        print(f"tfserverless: configuration error: {e.message}", file=sys.stderr)
        raise SystemExit(2) from None
