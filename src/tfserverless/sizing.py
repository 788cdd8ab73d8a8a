"""How many worker processes an instance can afford.  Each worker loads its own copy of the
model after gunicorn forks, so ``WORKERS`` copies must fit the memory limit; decided in the
master, before the fork, from the model's size on disk (no TensorFlow: a local walk, or one
HEAD / LIST of the store).

An archive's size is its compressed size, taken as the model's: a floor, but a close one,
as float32 weights compress little (gzip: 0.93x on both benchmark models' variables).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import suppress
from typing import NamedTuple, Optional

from . import cgroup
from .config import Config
from .errors import ConfigError, TFServerlessError

log = logging.getLogger("tfserverless.server")

#: a local directory's walk stops counting after this many files (its size is then a floor)
MAX_ENTRIES = 100_000
#: one worker's peak RSS = BASE + PER_BYTE x model bytes: benchmarks/workers_bench.py measured
#: 572 MB + 1.091 x (TensorFlow 2.21, MNIST to 1 GiB, within 3 MB of the line), rounded up
BASE = 600 * 10**6
PER_BYTE = 1.1
#: gunicorn's master (47 MB measured), beside the largest request body (``MAX_BODY_BYTES``)
MASTER = 64 * 10**6
#: a model this large gets one worker by default: on 2 cores two workers served 0.89-1.09x of
#: one's requests on 128 MB (batch 1) to 1 GiB (batch 32) models, whose TensorFlow work already
#: runs on every core, against 1.56-1.66x on the 0.8 MB MNIST (Python-bound) at 16-64 clients
#: (benchmarks/results/workers.md), so a second copy of a large model costs memory for nothing.
#: Size stands in for work per request: right for dense models, not for a large embedding
#: table looked up cheaply (set WORKERS there)
ONE_WORKER_BYTES = 100 * 10**6


class ModelSize(NamedTuple):
    nbytes: int
    note: str  # "" when exact; else why it is a floor


def model_bytes(url: str, config: Optional[Config] = None) -> ModelSize:
    """The model's bytes: a local directory's files (the SavedModel root's, at most
    ``MAX_ENTRIES`` of them), else what one ``stat`` of its source says (a prefix: its
    objects' sum; an archive: its compressed size, a floor of what it holds)."""
    from .storage import find_saved_model_root, open_source

    source = open_source(url, config or Config())
    local = source.local_dir()
    if local is None:
        info = source.stat()
        return ModelSize(info.size, "compressed" if info.kind == "object" else "")
    with suppress(TFServerlessError):  # not a model: the load will say so
        local = find_saved_model_root(local, quiet=True)
    return tree_bytes(local)


def tree_bytes(top: str) -> ModelSize:
    """The bytes of the files under ``top`` as a load reads them: links followed (a
    Hugging Face snapshot or a Kubernetes volume is links to blobs), each file once, at most
    ``MAX_ENTRIES`` of them; a file that cannot be read (a dangling link) counts nothing."""
    total = files = 0
    seen = set()
    for root, _, names in os.walk(top):
        for name in names:
            files += 1
            if files > MAX_ENTRIES:
                return ModelSize(total, f"first {MAX_ENTRIES:,} files")
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return ModelSize(total, "")


def per_worker(nbytes: int) -> int:
    """Bytes one worker needs at its peak for a model of ``nbytes``."""
    return BASE + int(PER_BYTE * nbytes)


def headroom(config: Config) -> int:
    """What the instance needs beside its workers' measured peaks."""
    return MASTER + config.max_body_bytes


def fitting(config: Config, limit: int, nbytes: int) -> int:
    """How many workers fit in ``limit`` bytes (0: not even one)."""
    return max(0, (limit - headroom(config)) // per_worker(nbytes))


def memory_limit(config: Config, cgroup_root: str = cgroup.ROOT) -> int:
    """The instance's memory in bytes, the lowest of what the cgroup and the platform say
    (0: unknown)."""
    known = [n for n in (cgroup.memory_limit(cgroup_root), config.platform_memory) if n]
    return min(known) if known else 0


def gb(n: int) -> str:
    """Bytes in GB, MB under 1 GB (10^9, 10^6: what ``du`` and memory settings say)."""
    return f"{n / 1e9:.2f} GB" if n >= 10**9 else f"{n / 1e6:.{0 if n >= 10**7 else 1}f} MB"


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


class Choice(NamedTuple):
    workers: int
    line: str  # what was chosen and why, one line
    warn: bool = False


def choose(config: Config, cores: int, limit: int, size: Optional[ModelSize],
           unknown: str = "") -> Choice:
    """``WORKERS`` for this instance and the one line saying why.  Unset: ``cores``; one
    for a model of ``ONE_WORKER_BYTES`` or more; no more than fit ``limit``, and at least 1.
    Set: as set, unless that many copies cannot fit (a ConfigError).  ``unknown``: why the
    model's size could not be learned ("" when it was, or was not needed)."""
    n = config.workers if config.workers_set else cores
    why = [f"WORKERS={n}" if config.workers_set else f"{cores} core{'s' * (cores != 1)}"]
    if unknown:
        why.append(f"model size unknown: {unknown}")
    if size is not None:
        floor = f" ({size.note}: a floor)" if size.note else ""
        why.append(f"model {gb(size.nbytes)}{floor}, ~{gb(per_worker(size.nbytes))} a worker")
        if not config.workers_set and size.nbytes >= ONE_WORKER_BYTES and n > 1:
            n = 1
            why.append(f"one worker serves a model over {ONE_WORKER_BYTES // 10**6} MB as fast "
                       "as more")
    why.append(f"memory limit {gib(limit)}" if limit else "memory limit unknown")
    fit = fitting(config, limit, size.nbytes) if limit and size is not None else n
    if config.workers_set and n > 1 and fit < n:
        assert size is not None
        raise ConfigError(
            f"WORKERS={n}: {n} copies of a {gb(size.nbytes)} model need "
            f"~{gb(n * per_worker(size.nbytes) + headroom(config))}; the memory limit is "
            f"{gib(limit)}; expected WORKERS<={max(1, fit)} or more memory")
    if fit < 1:
        return Choice(1, f"workers: 1 ({'; '.join(why)}): not even one worker fits; starting "
                         "one, which the OOM killer may stop", warn=True)
    n = min(n, fit)
    return Choice(n, f"workers: {n} ({'; '.join(why)})", warn=bool(unknown))


def choice(config: Config, cgroup_root: str = cgroup.ROOT) -> Choice:
    """``choose`` with this instance's limit and model size (looked up only when it can change
    anything); a ConfigError when ``WORKERS`` copies cannot fit."""
    limit = memory_limit(config, cgroup_root)
    size: Optional[ModelSize] = None
    unknown = ""
    # looked up only where it can change the count: WORKERS unset on several cores or under a
    # limit; WORKERS above one under a limit
    many = config.workers > 1
    if (bool(limit) and many) if config.workers_set else (bool(limit) or many):
        try:
            size = model_bytes(config.require_model_path(), config)
        except TFServerlessError as e:
            unknown = e.message
        except Exception as e:  # an SDK's error may carry request details: its type only
            unknown = type(e).__name__
    return choose(config, config.workers, limit, size, unknown)


def workers(config: Config, cgroup_root: str = cgroup.ROOT) -> int:
    """``choice``'s count, its reason logged in one line."""
    chosen = choice(config, cgroup_root)
    (log.warning if chosen.warn else log.info)("%s", chosen.line)
    return chosen.workers


def workers_or_exit(config: Config, *, quiet: bool = False) -> Choice:
    """``choice`` for a server about to fork them, logged unless ``quiet`` (the caller says it
    in its own line; a warning is logged regardless): a refusal stops the start in one line,
    exit 2, as every configuration error does."""
    try:
        chosen = choice(config)
    except ConfigError as e:
        print(f"tfserverless: configuration error: {e.message}", file=sys.stderr)
        raise SystemExit(2) from None
    if chosen.warn or not quiet:
        (log.warning if chosen.warn else log.info)("%s", chosen.line)
    return chosen


__all__ = ["Choice", "ModelSize", "choice", "choose", "memory_limit", "model_bytes", "per_worker",
           "tree_bytes", "workers", "workers_or_exit"]
