"""Warm-up requests: EAS ``.bin`` / ``.txt`` files and TF Serving's TFRecord warm-up data.

Every format becomes serialized EAS ``PredictRequest`` bodies, which the service replays
through the same predict path as traffic (``Predictor.run_predict``) before it reports ready.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import Config
from ..errors import TFServerlessError, first_line
from ..protocol.tfrecord import RecordError, prediction_log_to_request, read_tfrecords
from ..storage.base import redact

log = logging.getLogger("tfserverless")

TF_SERVING_WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")


class WarmupError(TFServerlessError):
    status = 503


# --- loading ---------------------------------------------------------------------------------

def parse_warmup_file(name: str, data: bytes) -> List[bytes]:
    """EAS ``.bin`` (one PredictRequest), ``.txt`` (one base64 PredictRequest a line) or a
    TF Serving TFRecord file, as request bodies."""
    lower = name.lower().split("?")[0]
    if lower.endswith(".txt"):
        out = []
        for n, line in enumerate(data.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                out.append(base64.b64decode(line, validate=True))
            except (binascii.Error, ValueError):
                raise WarmupError(f"{lower.rsplit('/', 1)[-1]} line {n} is not base64 of a "
                                  "serialized PredictRequest") from None
        return out
    if lower.endswith("tf_serving_warmup_requests") or lower.endswith(".tfrecord"):
        try:
            bodies = [prediction_log_to_request(r) for r in read_tfrecords(data)]
        except RecordError as e:
            raise WarmupError(e.message) from None
        return [b for b in bodies if b is not None]
    return [data]


def load_requests(config: Config, model_dir: str,
                  read: Callable[[str, Config], bytes]) -> Tuple[str, List[bytes]]:
    """(where from, request bodies): ``WARM_UP_DATA_PATH`` if set, else the SavedModel's own
    TF Serving warm-up file, else nothing."""
    if config.warm_up_data_path:
        path = config.warm_up_data_path
        return path, parse_warmup_file(path, read(path, config))
    local = os.path.join(model_dir, TF_SERVING_WARMUP)
    if os.path.isfile(local):
        with open(local, "rb") as f:
            return TF_SERVING_WARMUP, parse_warmup_file(local, f.read())
    return "", []




def replay(config: Config, model: Any, run_predict: Callable[[Any, bytes], Any],
           read: Callable[[str, Config], bytes], info: Dict[str, Any], *,
           keep: int = 0) -> List[bytes]:
    """Replay the warm-up requests ``WARM_UP_COUNT`` times each through ``run_predict`` (the
    predict path traffic takes), filling ``info`` for /healthz as it goes; the first ``keep``
    bodies that succeeded (the platform's adapter then sends them through its whole request
    path), kept for the worker's life, so no more than it replays: none over
    ``MAX_BODY_BYTES`` (the path would refuse it), and together no more than that either.

    Runs as the model holder's after-load hook, so readiness waits for it.  A failing request
    is logged with its reason and recorded; it never stops the service."""
    info.update(source="", requests=0, replayed=0, failed=0, errors=[])
    t0 = time.perf_counter()
    source = config.warm_up_data_path
    try:
        source, bodies = load_requests(config, model.path, read)
    except Exception as e:  # unreadable warm-up data is reported, never fatal
        info.update(source=redact(source), errors=[first_line(e, named=True)])
        log.error("warm-up data not usable (%s): %s", redact(source), first_line(e, named=True))
        return []
    info.update(source=redact(source), requests=len(bodies))
    first: List[float] = []
    good: List[bytes] = []
    kept = 0
    for i, body in enumerate(bodies):
        for n in range(config.warm_up_count):
            t = time.perf_counter()
            try:
                run_predict(model, body)
                info["replayed"] += 1
                if n == 0:
                    first.append(time.perf_counter() - t)
                    if len(good) < keep and kept + len(body) <= config.max_body_bytes:
                        good.append(body)
                        kept += len(body)
            except Exception as e:  # a warm-up failure is reported, never fatal
                msg = first_line(e, named=True)
                info["failed"] += 1
                if len(info["errors"]) < 5:
                    info["errors"].append(f"request {i + 1}: {msg}")
                log.error("warm-up request %d failed: %s", i + 1, msg)
                break
    info["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("%s", result_line(info, config.warm_up_count, first[0] if first else None))
    return good


def result_line(info: Dict[str, Any], count: int, first: Optional[float]) -> str:
    """The warm-up's result in one line, from ``replay``'s ``info``."""
    if not info["requests"]:
        return "warm-up: no warm-up data"
    return (f"warm-up: {info['requests']} request(s) x {count} from {info['source']}: "
            f"{info['replayed']} replayed in {info['seconds'] * 1e3:.0f} ms; "
            f"{f'first replay {first * 1e3:.1f} ms' if first is not None else 'no replay succeeded'}"
            f", failed {info['failed']}")


__all__ = ["WarmupError", "load_requests", "parse_warmup_file", "replay", "result_line"]
