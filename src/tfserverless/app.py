"""Wiring shared by every entry point: environment -> Config -> Service."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from typing import Callable, Dict, Mapping, Optional, Tuple

from .config import Config
from .errors import ConfigError
from .loader import ModelHolder, Servable
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
    from .model import Model

    return Model.load(path, intra_op_threads=config.intra_op_threads,
                      inter_op_threads=config.inter_op_threads, processor=config.processor,
                      cuda_visible_devices=config.cuda_visible_devices)


def _load_litert(path: str, config: Config) -> Servable:
    from .model_litert import LiteModel

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


def load_model(config: Config, phases: Optional[Dict[str, float]] = None) -> Servable:
    """Fetch (or reuse) the model and load it with the backend its files call for; logs the
    one-line cold-start timeline and puts its phases' seconds in ``phases``."""
    from . import storage

    t0 = time.monotonic()
    fetched = storage.fetch_model(config)
    runtime, load = backend_for(fetched.path)
    model = load(fetched.path, config)
    seconds = model.import_seconds, model.load_seconds
    if phases is not None:
        phases.update(fetch=fetched.seconds, tf_import=seconds[0], load=seconds[1])
    fetch = "cached" if fetched.cached else f"{fetched.seconds:.2f}s ({fetched.nbytes / 1e6:.1f} MB)"
    log.info(
        "cold start: fetch+extract %s, %s import %.2fs, load %.2fs, total %.2fs",
        fetch, runtime, seconds[0], seconds[1], time.monotonic() - t0,
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
        from . import storage, warmup

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
