"""Prometheus metrics for ``GET /metrics``, summed over every worker process of an instance.

gunicorn forks its workers from the process that imported the handler, so the counters live in
one anonymous shared memory map made at import: each worker claims a row of it after the
fork (a row of a dead worker is taken over, its counters kept, so sums never go backwards)
and writes plain floats there, with no lock and no system call on the request path.  A scrape
answered by any worker reads every row.  Names follow TF Serving's where it has one
(``:tensorflow:serving:request_count``, ``request_latency``, ``runtime_latency`` in
microseconds, ``batching_session:*``, ``:tensorflow:cc:saved_model:load_attempt_count``).
"""

from __future__ import annotations

import bisect
import mmap
import multiprocessing
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

MAX_WORKERS = 64
#: every client ecosystem (``Request.protocol``); "none" for requests no route took
PROTOCOLS = ("eas", "tfserving", "v2", "sagemaker", "tfserving-grpc", "v2-grpc", "grpc", "none")
STATUSES = (200, 400, 401, 403, 404, 405, 408, 413, 415, 429, 431, 450, 499, 500, 501, 503, 0)
#: microseconds, as TF Serving's latency histograms
LATENCY_BUCKETS = (100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
                   500000, 1000000, 2500000, 5000000, 10000000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PHASES = ("fetch", "tf_import", "load", "warm_up")
#: what the model's fetch did (``fetch_<name>`` in ``load``'s phases): bytes, parallel
#: connections, parts read again after a failure
FETCH = ("bytes", "connections", "parts_retried")
SHED = (450, 408, 429)


class _Layout:
    """Offsets of each value in a worker's row of float64s."""

    def __init__(self) -> None:
        self.size = 1  # [0]: the owner's pid
        self.requests = self._take(len(PROTOCOLS) * len(STATUSES))
        self.request_latency = self._hist(len(LATENCY_BUCKETS))
        self.runtime_latency = self._hist(len(LATENCY_BUCKETS))
        self.queuing_latency = self._hist(len(LATENCY_BUCKETS))
        self.batch_size = self._hist(len(BATCH_BUCKETS))
        self.shed = self._take(len(SHED))
        self.loads = self._take(2)  # success, failure
        self.phases = self._take(len(PHASES))
        self.fetch = self._take(len(FETCH))
        self.running = self._take(1)
        self.waiting = self._take(1)
        self.inferences = self._take(4)  # predictions answered: ok count, ok ns, failed, ns
        self.last_inference = self._take(1)  # ms since the epoch

    def _take(self, n: int) -> int:
        at, self.size = self.size, self.size + n
        return at

    def _hist(self, buckets: int) -> int:
        return self._take(buckets + 3)  # buckets, +Inf, sum, count


L = _Layout()


class Metrics:
    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self.max_workers = max_workers
        self._map = mmap.mmap(-1, max_workers * L.size * 8)  # anonymous, shared across fork
        self._all = memoryview(self._map).cast("d")
        try:
            self._claim: Any = multiprocessing.Lock()  # a semaphore every forked worker shares
        except OSError:  # no /dev/shm (AWS Lambda): one process per instance there anyway
            self._claim = threading.Lock()
        self._pid = 0  # the process that owns row ``_base``; 0: none yet (reset by a fork)
        self._base = 0
        self._shed_seen: Dict[int, int] = {}  # this worker's shed counts already added
        if hasattr(os, "register_at_fork"):  # so the request path never asks for its pid
            os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._pid = 0

    # the writing side (this worker's row) -----------------------------------------------------

    def _row(self) -> int:
        if not self._pid:
            self._take_row(os.getpid())
        return self._base

    def _take_row(self, pid: int) -> None:
        with self._claim:
            rows = range(self.max_workers)
            free = next((r for r in rows if self._all[r * L.size] == 0), None)
            if free is None:
                free = next((r for r in rows if not _alive(int(self._all[r * L.size]))), 0)
            base = free * L.size
            self._all[base] = pid
            for g in (L.running, L.waiting):  # gauges of the previous owner
                self._all[base + g] = 0.0
            self._pid, self._base, self._shed_seen = pid, base, {}

    def _hist_add(self, at: int, buckets: Sequence[float], value: float) -> None:
        a = self._all
        i = at + bisect.bisect_left(buckets, value)
        a[i] += 1
        a[at + len(buckets) + 1] += value
        a[at + len(buckets) + 2] += 1

    def request(self, protocol: str, status: int, seconds: float, infer: bool = False) -> None:
        """A request answered; ``infer``: a prediction (Triton's statistics count those)."""
        base = self._row()
        p = PROTOCOLS.index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS) - 1
        s = _STATUS_INDEX.get(status, len(STATUSES) - 1)
        a = self._all
        a[base + L.requests + p * len(STATUSES) + s] += 1
        self._hist_add(base + L.request_latency, LATENCY_BUCKETS, seconds * 1e6)
        if infer:
            at = base + L.inferences + (0 if status == 200 else 2)
            a[at] += 1
            a[at + 1] += seconds * 1e9
            if status == 200:
                a[base + L.last_inference] = time.time() * 1e3

    def runtime(self, rows: int, seconds: float) -> None:
        """One model call of ``rows`` rows (a batch)."""
        base = self._row()
        self._hist_add(base + L.runtime_latency, LATENCY_BUCKETS, seconds * 1e6)
        self._hist_add(base + L.batch_size, BATCH_BUCKETS, rows)

    def queued(self, seconds: float) -> None:
        self._hist_add(self._row() + L.queuing_latency, LATENCY_BUCKETS, seconds * 1e6)

    def gauges(self, running: int, waiting: int, shed: Dict[int, int]) -> None:
        """This worker's admission state; ``shed`` is its running count of refusals."""
        base = self._row()
        a = self._all
        a[base + L.running] = running
        a[base + L.waiting] = waiting
        seen = self._shed_seen
        for i, code in enumerate(SHED):
            n = shed.get(code, 0)
            if n != seen.get(code, 0):  # added, so a row taken over keeps its old counts
                a[base + L.shed + i] += n - seen.get(code, 0)
                seen[code] = n

    def load(self, ok: bool, phases: Optional[Dict[str, float]] = None) -> None:
        base = self._row()
        self._all[base + L.loads + (0 if ok else 1)] += 1
        for name, value in (phases or {}).items():
            if name in PHASES:
                self._all[base + L.phases + PHASES.index(name)] = value
            elif name.startswith("fetch_") and name[6:] in FETCH:
                self._all[base + L.fetch + FETCH.index(name[6:])] = value

    # the reading side (every row) -------------------------------------------------------------

    def _rows(self) -> List[Tuple[int, int, bool]]:
        out = []
        for r in range(self.max_workers):
            pid = int(self._all[r * L.size])
            if pid:
                out.append((r * L.size, pid, pid == os.getpid() or _alive(pid)))
        return out

    def inference_totals(self) -> Dict[str, float]:
        """What Triton's statistics extension reports, summed over the live and past workers:
        predictions answered (``success``/``fail``: count and ns), time queued and in the
        model (count and ns), rows inferred and model calls made, the last success (ms)."""
        self._row()
        rows = self._rows()
        a = self._all

        def total(at: int) -> float:
            return sum(a[b + at] for b, _, _ in rows)

        def hist(at: int, buckets: Sequence[float], scale: float) -> Tuple[float, float]:
            return total(at + len(buckets) + 2), total(at + len(buckets) + 1) * scale

        q, r = hist(L.queuing_latency, LATENCY_BUCKETS, 1e3), hist(L.runtime_latency, LATENCY_BUCKETS, 1e3)
        calls, inferred = hist(L.batch_size, BATCH_BUCKETS, 1.0)
        return {"success": total(L.inferences), "success_ns": total(L.inferences + 1),
                "fail": total(L.inferences + 2), "fail_ns": total(L.inferences + 3),
                "queue": q[0], "queue_ns": q[1], "compute": r[0], "compute_ns": r[1],
                "inference_count": inferred, "execution_count": calls,
                "last_inference": max((a[b + L.last_inference] for b, _, _ in rows), default=0.0)}

    def render(self) -> bytes:
        self._row()
        rows = self._rows()
        a = self._all
        out: List[str] = []

        def total(at: int, live_only: bool = False) -> float:
            return sum(a[b + at] for b, _, live in rows if live or not live_only)

        def family(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        family(":tensorflow:serving:request_count", "counter",
               "requests answered, by HTTP status and client protocol")
        for pi, proto in enumerate(PROTOCOLS):
            for si, status in enumerate(STATUSES):
                n = total(L.requests + pi * len(STATUSES) + si)
                if n:
                    code = str(status) if status else "other"
                    out.append(f':tensorflow:serving:request_count{{protocol="{proto}",'
                               f'status="{code}"}} {n:.0f}')
        for name, at, buckets, text in (
            (":tensorflow:serving:request_latency", L.request_latency, LATENCY_BUCKETS,
             "request latency in microseconds, read to reply"),
            (":tensorflow:serving:runtime_latency", L.runtime_latency, LATENCY_BUCKETS,
             "model call latency in microseconds (one call per batch)"),
            (":tensorflow:serving:batching_session:queuing_latency", L.queuing_latency,
             LATENCY_BUCKETS, "microseconds a prediction waited: admission queue and batch"),
            (":tensorflow:serving:batching_session:processed_batch_size", L.batch_size,
             BATCH_BUCKETS, "rows per model call"),
        ):
            family(name, "histogram", text)
            cum = 0.0
            for i, le in enumerate([*buckets, "+Inf"]):
                cum += total(at + i)
                out.append(f'{name}_bucket{{le="{le}"}} {cum:.0f}')
            out.append(f"{name}_sum {total(at + len(buckets) + 1):.9g}")
            out.append(f"{name}_count {total(at + len(buckets) + 2):.0f}")
        family("tfserverless_shed_total", "counter",
               "requests refused under load: 450 queue full, 408 past RPC_KEEPALIVE, 429 rate")
        for i, shed in enumerate(SHED):
            out.append(f'tfserverless_shed_total{{status="{shed}"}} {total(L.shed + i):.0f}')
        family("tfserverless_queue_depth", "gauge", "predictions waiting (admission and batch)")
        out.append(f"tfserverless_queue_depth {total(L.waiting, True):.0f}")
        family("tfserverless_running", "gauge", "predictions admitted and not yet answered")
        out.append(f"tfserverless_running {total(L.running, True):.0f}")
        family(":tensorflow:cc:saved_model:load_attempt_count", "counter", "model loads")
        for i, outcome in enumerate(("success", "failure")):
            out.append(f':tensorflow:cc:saved_model:load_attempt_count{{status="{outcome}"}} '
                       f"{total(L.loads + i):.0f}")
        family("tfserverless_cold_start_seconds", "gauge", "each live worker's cold-start phases")
        for b, pid, live in rows:
            for i, phase in enumerate(PHASES):
                if live and a[b + L.phases + i]:
                    out.append(f'tfserverless_cold_start_seconds{{phase="{phase}",worker="{pid}"}} '
                               f"{a[b + L.phases + i]:.6g}")
        for i, name in enumerate(FETCH):
            family(f"tfserverless_fetch_{name}", "gauge", f"each live worker's model fetch: {name}")
            for b, pid, live in rows:
                if live and a[b + L.phases]:  # it fetched (0 s: cached or local)
                    out.append(f'tfserverless_fetch_{name}{{worker="{pid}"}} '
                               f"{a[b + L.fetch + i]:.0f}")
        family("tfserverless_workers", "gauge", "live worker processes of this instance")
        out.append(f"tfserverless_workers {sum(1 for _, _, live in rows if live)}")
        return ("\n".join(out) + "\n").encode()


_STATUS_INDEX = {s: i for i, s in enumerate(STATUSES)}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["CONTENT_TYPE", "Metrics"]
