"""Wiring shared by every entry point: environment -> Config -> Service."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from typing import Dict, Mapping, Optional

from ..backends.holder import ModelHolder
from ..backends.registry import load_model
from ..backends.servable import Servable
from ..config import Config
from ..errors import ConfigError
from ..logs import quiet_third_party
from .service import PATH_WARMUP_REQUESTS, Service

log = logging.getLogger("tfserverless")


def setup_logging(level: str) -> None:
    """Our loggers at ``level`` on stderr; third-party ones quieted unless it is DEBUG."""
    quiet_third_party(level)
    root = logging.getLogger("tfserverless")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


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
            service.warmup_bodies = warmup.replay(config, model, service.predictor.run_predict,
                                                  storage.read_bytes, service.warmup,
                                                  keep=PATH_WARMUP_REQUESTS)
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
