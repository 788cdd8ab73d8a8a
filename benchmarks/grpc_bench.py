"""The gRPC front door under load, in one run on the sample MNIST (issue #26):

* ``tritonclient.grpc`` (.venv-triton) against ours (V2 ``GRPCInferenceService`` on
  ``GRPC_PORT``) and against KServe's Python ModelServer over V2 gRPC with a custom predictor
  taking an ``InferRequest`` (``kserve_v2_model.py``, .venv-kserve): target >= 3x;
* TF Serving's stock client (``PredictionServiceStub.Predict``, ``tensor_content``) against
  ours, next to our EAS protobuf over HTTP (the EAS SDK's wire format, a keep-alive
  ``http.client`` connection per thread) on the same server: target within 1.2x;
* each client against a bare ``grpc.aio`` server answering a fixed reply (``grpc_echo.py``),
  and the HTTP client against a bare ASGI app on our server (``bare_asgi.py``): the most that
  client reaches on this machine, the physical limit of the rows above it.

Each client is its own process (``grpc_load.py``) running 4 threads, each thread its own
client, the request built once before the timed loop.  One worker each, batching off, batch 1
and batch 64.  Rounds are interleaved and the best of each kept.  Besides requests/s and
latency, the CPU the client process and the server's process group used over the timed loop
(in cores), and the server's CPU per request.  Writes ``benchmarks/results/grpc.md``.

``grpc_bench.py --profile``: where ours spends each request's time, on the three rows that
reach it (V2 gRPC, TF Serving gRPC, EAS HTTP), each batch on a fresh server: the CPU each
thread of its worker used per request (no profiler), then cProfile on the worker for the same
load (``grpc_profiled.py``), its time per request grouped by where it is spent.  Writes
``benchmarks/results/grpc_profile.md``.
"""

from __future__ import annotations

import http.client
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from _common import ROOT, free_port, spawn, stop, wait_ok, write_result
from serve_bench import KSERVE_PY

from tfserverless import protocol
from tfserverless.server import worker_class

SECONDS = float(os.environ.get("BENCH_SECONDS", "2.5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
THREADS = 4
BATCHES = (1, 64)
BIN = os.path.dirname(sys.executable)
TRITON_PY = os.environ.get("TRITON_PYTHON", os.path.join(ROOT, ".venv-triton", "bin", "python"))
HERE = os.path.join(ROOT, "benchmarks")
TICK = os.sysconf("SC_CLK_TCK")


class Way(NamedTuple):
    name: str
    client: str  # grpc_load.py's WAY
    server: str
    port: str  # "grpc" or "http"
    baseline: str  # the row its ratio is against


KSERVE = "tritonclient -> KServe ModelServer, V2 gRPC"
EAS = "EAS protobuf over HTTP -> ours"
WAYS = (
    Way("tritonclient -> ours, V2 gRPC", "triton", "ours", "grpc", KSERVE),
    Way(KSERVE, "triton", "kserve", "grpc", KSERVE),
    Way("tritonclient -> bare grpc.aio, fixed reply (ceiling)", "triton", "echo", "grpc", KSERVE),
    Way("TF Serving stub -> ours, Predict gRPC", "tfs", "ours", "grpc", EAS),
    Way(EAS, "eas", "ours", "http", EAS),
    Way("TF Serving stub -> bare grpc.aio, fixed reply (ceiling)", "tfs", "echo", "grpc", EAS),
    Way("EAS protobuf over HTTP -> bare ASGI app on our server (ceiling)", "eas", "bare", "http",
        EAS),
)


class Server:
    def __init__(self, proc: Any, http: int, grpc: int) -> None:
        self.proc, self.http, self.grpc = proc, http, grpc


def start(server: str, model: str, profile: str = "") -> Server:
    http, grpc = free_port(), free_port()
    if server == "kserve":
        argv = [KSERVE_PY, os.path.join(HERE, "kserve_v2_model.py"), "--model_dir", model,
                "--signature", "predict_images", "--input", "images", "--output", "scores",
                "--model_name", "m", "--http_port", str(http), "--grpc_port", str(grpc),
                "--workers", "1"]
        return Server(spawn(argv, {}, http), http, grpc)
    if server == "echo":
        return Server(spawn([sys.executable, os.path.join(HERE, "grpc_echo.py"), str(grpc)], {},
                            grpc), http, grpc)
    if server == "bare":
        argv = [os.path.join(BIN, "gunicorn"), "-w", "1", "-k", str(worker_class()), "-b",
                f"127.0.0.1:{http}", "--chdir", HERE, "bare_asgi:app"]
        return Server(spawn(argv, {}, http), http, grpc)
    argv = [os.path.join(BIN, "tfserverless"), "serve", "--host", "127.0.0.1", "--port", str(http),
            "--grpc-port", str(grpc)]
    env = {"MODEL_PATH": model, "WORKERS": "1", "RPC_BATCHING": "false"}
    if profile:  # the same server with a cProfile switch: for where the time goes
        argv = [sys.executable, os.path.join(HERE, "grpc_profiled.py"), *argv[1:]]
        env["GRPC_BENCH_PROFILE"] = profile
    return Server(spawn(argv, env, http), http, grpc)


def eas_body(batch: int) -> bytes:
    x = np.random.RandomState(batch).rand(batch, 784).astype(np.float32)
    return protocol.encode_request({"images": x}, signature_name="predict_images")


def group_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process group ``pid`` leads has used so far."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:
                ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / TICK


class Client:
    """A ``grpc_load.py`` process: one command at a time."""

    def __init__(self, way: str) -> None:
        py = TRITON_PY if way == "triton" else sys.executable
        self.proc = subprocess.Popen([py, os.path.join(HERE, "grpc_load.py"), way],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

    def run(self, server: Server, target: str, batch: int,
            around: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """One load; ``around`` is called as the timed loop starts and as it ends."""
        assert self.proc.stdin and self.proc.stdout
        cmd = {"target": target, "model": "m", "batch": batch, "threads": THREADS,
               "seconds": SECONDS}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        go = self.proc.stdout.readline().strip()
        cpu0 = group_cpu(server.proc.pid)
        if around:
            around()
        t0 = time.perf_counter()
        if go != "go":
            raise RuntimeError(f"load client: {go!r}")
        out: Dict[str, Any] = json.loads(self.proc.stdout.readline())
        wall = time.perf_counter() - t0
        if around:
            around()
        if "error" in out:
            raise RuntimeError(f"{target} batch {batch}: {out['error']}")
        out["server_cpu"] = (group_cpu(server.proc.pid) - cpu0) / wall
        return out

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def measure(servers: Dict[str, Server], clients: Dict[str, Client]
            ) -> Dict[Tuple[str, int], Dict[str, float]]:
    best: Dict[Tuple[str, int], Dict[str, float]] = {}
    for _ in range(ROUNDS):
        for batch in BATCHES:
            for w in WAYS:
                s = servers[w.server]
                target = f"127.0.0.1:{s.grpc if w.port == 'grpc' else s.http}"
                r = clients[w.client].run(s, target, batch)
                if r["rps"] > best.get((w.name, batch), {"rps": 0.0})["rps"]:
                    best[(w.name, batch)] = r
    return best


def report(best: Dict[Tuple[str, int], Dict[str, float]], load0: Tuple[float, ...],
           load1: Tuple[float, ...]) -> str:
    lines = [f"# gRPC on the sample MNIST ({ROUNDS} interleaved rounds of {SECONDS:g}s, best of "
             f"each; one worker each, batching off; {THREADS} client threads)", "",
             f"{os.cpu_count()} cores shared by servers and clients. Load average (1, 5, 15 min) "
             f"before: {', '.join(f'{x:.2f}' for x in load0)}; after: "
             f"{', '.join(f'{x:.2f}' for x in load1)}.", "",
             "Each client is its own process, each thread its own client; the request is built "
             "once, before the timed loop (tritonclient: the `InferInput`; TF Serving's stub: the "
             "`PredictRequest`; EAS: the body bytes). ratio: req/s against the row named under "
             "the table, same batch, same run. CPU: cores used over the timed loop.", "",
             "| way | batch | req/s | p50 ms | p99 ms | ratio | client CPU | server CPU | "
             "server CPU µs/req |", "|---|---|---|---|---|---|---|---|---|"]
    for batch in BATCHES:
        for w in WAYS:
            r = best[(w.name, batch)]
            ratio = r["rps"] / best[(w.baseline, batch)]["rps"]
            lines.append(f"| {w.name} | {batch} | {r['rps']:,.0f} | {r['p50'] * 1e3:.2f} | "
                         f"{r['p99'] * 1e3:.2f} | {ratio:.2f}x | {r['cpu']:.2f} | "
                         f"{r['server_cpu']:.2f} | {r['server_cpu'] / r['rps'] * 1e6:,.0f} |")
    lines += ["", f"ratio: tritonclient rows against `{KSERVE}`; TF Serving stub and EAS rows "
              f"against `{EAS}`.", ""]
    for batch in BATCHES:
        ours = best[(WAYS[0].name, batch)]["rps"]
        kserve = best[(KSERVE, batch)]["rps"]
        ceiling = best[(WAYS[2].name, batch)]["rps"]
        lines.append(f"RATIO ours / KServe V2 gRPC (tritonclient), batch {batch}: "
                     f"{ours / kserve:.2f}x (target >= 3x); the client's ceiling is "
                     f"{ceiling / kserve:.2f}x KServe, ours is {ours / ceiling:.0%} of it")
    for batch in BATCHES:
        tfs = best[(WAYS[3].name, batch)]["rps"]
        eas = best[(EAS, batch)]["rps"]
        faster = "TF Serving gRPC" if tfs > eas else "EAS HTTP"
        lines.append(f"RATIO TF Serving gRPC Predict / EAS protobuf HTTP, batch {batch}: "
                     f"{tfs / eas:.2f}x ({faster} faster by {max(tfs, eas) / min(tfs, eas):.2f}x; "
                     "target within 1.2x)")
    return "\n".join(lines) + "\n"


def threads_cpu(pid: int) -> Dict[str, float]:
    """CPU seconds each kind of thread of process ``pid`` has used: its main thread (the event
    loop) apart, the others by name (Python's own threads carry the process's name)."""
    out: Dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "main thread (event loop)" if int(tid) == pid else f"{name} threads"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def worker_of(master: int) -> int:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return int(f.read().split()[0])


PHASES = {":tensorflow:serving:request_latency": "in the service",
          ":tensorflow:serving:runtime_latency": "model run",
          ":tensorflow:serving:batching_session:queuing_latency": "admission queue"}


def phase_sums(port: int) -> Dict[str, float]:
    """/metrics' latency sums (µs) and counts, by phase: what the service itself times."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: Dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for metric, phase in PHASES.items():
            if name in (metric + "_sum", metric + "_count"):
                out[phase + name[len(metric):]] = float(value)
    return out


def snapshot(pid: int, port: int = 0) -> Dict[str, float]:
    out = dict(threads_cpu(pid), wall=time.perf_counter())
    if port:
        out.update({"/metrics " + k: v for k, v in phase_sums(port).items()})
    return out


#: where a profiled function's own time goes: waits first (a builtin's name), then the first
#: match of its file (or a builtin's name)
WAITS = ("select", "poll", "acquire", "_queue", "wait")
PLACES = (
    ("model: TensorFlow (Python and its C calls)", ("tensorflow", "tfe_py", "pywrap_tf")),
    ("our gRPC door: platforms/grpc.py", ("platforms/grpc.py",)),
    ("our HTTP door: platforms/asgi.py, http_guard; uvicorn, httptools",
     ("platforms/asgi.py", "http_guard", "uvicorn", "httptools", "h11")),
    ("decode / encode: tfserverless/protocol", ("tfserverless/protocol",)),
    ("service core: serving/, messages, admission, metrics", ("tfserverless/",)),
    ("grpc.aio: its Python (its Cython shows as callers' time)", ("grpc",)),
    ("asyncio: tasks, futures, handles (and Cython run from them)",
     ("asyncio", "_contextvars", "uvloop")),
    ("numpy", ("numpy",)),
)
IDLE = "waiting, idle (epoll, locks, queues)"


def place(func: Tuple[str, int, str]) -> str:
    where = (func[0] + " " + func[2]).lower()
    if func[0] == "~" and any(k in where for k in WAITS):
        return IDLE
    for name, keys in PLACES:
        if any(k in where for k in keys):
            return name
    return "other (Python builtins, logging, ...)"


def label(func: Tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    parts = path.split("/")
    return f"{'/'.join(parts[-2:])}:{line}({name})"


def profile_report(prof: str, n: int) -> List[str]:
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_place: Dict[str, float] = {}
    for func, (_, _, tt, _, _) in st.items():
        by_place[place(func)] = by_place.get(place(func), 0.0) + tt
    busy = sum(t for p, t in by_place.items() if p != IDLE)
    lines = ["| where (cProfile, own time) | µs/req | share of busy |", "|---|---|---|"]
    for p, t in sorted(by_place.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {p} | {t / n * 1e6:,.0f} | {'' if p == IDLE else f'{t / busy:.0%}'} |")
    lines += ["", "| top functions by own time (waits left out) | calls/req | own µs/req | "
              "cumulative µs/req |", "|---|---|---|---|"]
    top = sorted(((f, v) for f, v in st.items() if place(f) != IDLE), key=lambda kv: -kv[1][2])
    for func, (_, nc, tt, ct, _) in top[:12]:
        lines.append(f"| `{label(func)}` | {nc / n:.1f} | {tt / n * 1e6:,.0f} | "
                     f"{ct / n * 1e6:,.0f} |")
    return lines


def thread_lines(snaps: List[Dict[str, float]], n: int) -> List[str]:
    before, after = snaps
    secs = after["wall"] - before["wall"]
    lines = ["| worker thread, no profiler | CPU µs/req | cores |", "|---|---|---|"]
    kinds = [k for k in after if k != "wall" and not k.startswith("/metrics")]
    for kind in sorted(kinds, key=lambda k: -(after[k] - before.get(k, 0.0))):
        used = after[kind] - before.get(kind, 0.0)
        if used > 0:
            lines.append(f"| {kind} | {used / n * 1e6:,.0f} | {used / secs:.2f} |")
    phases = []
    for phase in PHASES.values():
        count = after.get(f"/metrics {phase}_count", 0.0) - before.get(f"/metrics {phase}_count", 0.0)
        total = after.get(f"/metrics {phase}_sum", 0.0) - before.get(f"/metrics {phase}_sum", 0.0)
        if count:
            phases.append(f"{phase} {total / count:,.0f} µs")
    if phases:
        lines += ["", "The service's own timers (/metrics, wall time per request): "
                  + "; ".join(phases) + "."]
    return lines


def profile_one(client: Client, w: Way, model: str, batch: int, prof: str
                ) -> Tuple[Dict[str, Any], Dict[str, Any], List[Dict[str, float]]]:
    """On a fresh server: a load without the profiler (its worker's threads' CPU and /metrics'
    timers before and after), then one under it (stats in ``prof``)."""
    s = start("ours", model, prof)
    try:
        wait_ok(s.http, "/", eas_body(1))
        worker = worker_of(s.proc.pid)
        target = f"127.0.0.1:{s.grpc if w.port == 'grpc' else s.http}"
        snaps: List[Dict[str, float]] = []
        plain = client.run(s, target, batch, lambda: snaps.append(snapshot(worker, s.http)))
        profiled = client.run(s, target, batch, lambda: os.kill(worker, signal.SIGRTMIN))
        deadline = time.monotonic() + 30
        while not os.path.exists(prof) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(s.proc)
    return plain, profiled, snaps


def profile(model: str) -> None:
    """Where ours spends a request's time, per way and batch (a fresh server each), and the
    bare servers' threads on the same load for comparison."""
    work = tempfile.mkdtemp(prefix="grpc-profile-")
    clients: Dict[str, Client] = {}
    load0 = os.getloadavg()
    lines = [f"# Where ours spends a request's time ({SECONDS:g}s per load, {THREADS} client "
             "threads, one worker, batching off; `grpc_bench.py --profile`)", "",
             "Per way and batch, a fresh `tfserverless serve` (`grpc_profiled.py`: the same "
             "server with a cProfile switch): first a load without the profiler, the CPU each "
             "thread of its worker used per request and the service's own timers; then the same "
             "load under cProfile, own time per request by where it is spent (wall time with the "
             "profiler's overhead: compare shares, not totals; grpc.aio's and uvloop's Cython "
             "do not show as functions of their own). Then the bare servers (a fixed reply, "
             "nothing else) on the same load: what their stack alone costs per request."]
    try:
        for w in (WAYS[0], WAYS[3], WAYS[4]):
            if w.client not in clients:
                clients[w.client] = Client(w.client)
            for batch in BATCHES:
                prof = os.path.join(work, f"{w.client}-{batch}.prof")
                plain, profiled, snaps = profile_one(clients[w.client], w, model, batch, prof)
                lines += ["", f"## {w.name}, batch {batch}", "",
                          f"Without the profiler: {plain['rps']:,.0f} req/s, p50 "
                          f"{plain['p50'] * 1e3:.2f} ms, server CPU "
                          f"{plain['server_cpu'] / plain['rps'] * 1e6:,.0f} µs/req, client CPU "
                          f"{plain['cpu']:.2f} cores. Under cProfile: {profiled['rps']:,.0f} "
                          "req/s.", "", *thread_lines(snaps, plain["n"]), "",
                          *profile_report(prof, profiled["n"])]
        lines += ["", "## The bare servers on the same loads (no profiler)"]
        for bare, port, way in (("echo", "grpc", "triton"), ("echo", "grpc", "tfs"),
                                ("bare", "http", "eas")):
            s = start(bare, model)
            try:
                if bare == "bare":
                    wait_ok(s.http, "/", b"")
                pid = s.proc.pid if bare == "echo" else worker_of(s.proc.pid)
                for batch in BATCHES:
                    snaps = []
                    r = clients[way].run(s, f"127.0.0.1:{s.grpc if port == 'grpc' else s.http}",
                                         batch, lambda: snaps.append(snapshot(pid)))  # noqa: B023
                    name = next(w.name for w in WAYS if w.server == bare and w.client == way)
                    lines += ["", f"{name}, batch {batch}: {r['rps']:,.0f} req/s, server CPU "
                              f"{r['server_cpu'] / r['rps'] * 1e6:,.0f} µs/req", "",
                              *thread_lines(snaps, r["n"])]
            finally:
                stop(s.proc)
    finally:
        for c in clients.values():
            c.close()
    lines += ["", "Load average (1, 5, 15 min) before: "
              f"{', '.join(f'{x:.2f}' for x in load0)}; after: "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}."]
    write_result("grpc_profile.md", "\n".join(lines) + "\n")


def main() -> None:
    model = os.path.join(ROOT, "samples", "mnist")  # `make bench` builds it (`make sample`)
    if "--profile" in sys.argv[1:]:
        profile(model)
        return
    load0 = os.getloadavg()
    servers: Dict[str, Server] = {}
    clients: Dict[str, Client] = {}
    try:
        for name in ("ours", "kserve", "echo", "bare"):
            servers[name] = start(name, model)
        wait_ok(servers["ours"].http, "/", eas_body(1))
        wait_ok(servers["bare"].http, "/", b"")
        # KServe and the echo server: the load clients wait for them (retrying while they load)
        for c in ("triton", "tfs", "eas"):
            clients[c] = Client(c)
        best = measure(servers, clients)
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            stop(s.proc)
    write_result("grpc.md", report(best, load0, os.getloadavg()))


if __name__ == "__main__":
    main()
