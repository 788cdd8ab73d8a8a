"""``tfserverless serve`` as it is, plus a profiling switch in its worker, for
``grpc_bench.py --profile``: ``python grpc_profiled.py serve ARGS...`` with
``GRPC_BENCH_PROFILE=FILE``.  The first ``SIGRTMIN`` sent to the worker starts cProfile on its
event-loop thread (where a small model's requests run end to end: decode, model, encode, the
gRPC and HTTP handlers) and on every thread started after it; the second stops it and writes
the merged stats to FILE.  Without the signal the worker runs untouched."""

from __future__ import annotations

import cProfile
import os
import pstats
import signal
import sys
import threading
from typing import Any, Dict, List

from tfserverless import server
from tfserverless.__main__ import main

OUT = os.environ["GRPC_BENCH_PROFILE"]
_profiles: List[cProfile.Profile] = []
_on = [False]


def _thread_start(*_: Any) -> None:  # threading.setprofile's hook: the thread's own profiler
    p = cProfile.Profile()
    _profiles.append(p)
    p.enable()


def _toggle(*_: Any) -> None:
    if not _on[0]:
        _on[0] = True
        threading.setprofile(_thread_start)
        _thread_start()
        return
    threading.setprofile(None)  # type: ignore[arg-type]
    for p in _profiles:
        p.disable()  # this thread's; another thread's stats are read as they stand
    stats = pstats.Stats(_profiles[0])
    for p in _profiles[1:]:
        stats.add(p)
    stats.dump_stats(OUT + ".tmp")
    os.replace(OUT + ".tmp", OUT)
    _profiles.clear()
    _on[0] = False


def _post_worker_init(_: Any) -> None:
    signal.signal(signal.SIGRTMIN, _toggle)


_options = server.options


def _with_hook(*args: Any, **kw: Any) -> Dict[str, Any]:
    return dict(_options(*args, **kw), post_worker_init=_post_worker_init)


server.options = _with_hook  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv[0] = "tfserverless"
    sys.exit(main())
