"""Cold start at real model sizes: process start -> first 200 of ``tfserverless serve``
(one worker) with a large SavedModel fetched from real stores on loopback, each behind a
per-connection throttle (32 MB/s a connection by default), against, in the same run:

- the same model from local disk (``local``): what a fetch adds is measured above it;
- the N-connection limit: N parallel 16 MiB range GETs of the same bytes through the same
  throttle (what the store allows; N = FETCH_CONNECTIONS);
- KServe's storage initializer (``kserve-storage``'s ``Storage.download``, its own venv):
  the download alone, before KServe's server would even start;
- ours with ``FETCH_CONNECTIONS=1``: one stream, what main did before ranged reads.

Targets: prefix <= local + 1.5x limit; .tar.gz <= local + 2.5x limit; ours faster than
KServe's download + our local start; the worker's peak RSS within 256 MB of a local start.

    python benchmarks/coldstart_bench.py [--sizes 1024] [--rate 32] [--stores s3,gcs,http]
        [--plot 100,512,1024,2048]   # also the time-vs-size figure (s3 prefix)
        [--sweep]                    # FETCH_CONNECTIONS x FETCH_PART_BYTES at the first size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from _common import ROOT, free_port, stop, write_result
from _stores import Stores, limit, nbytes, objects_of
from big_model import model

KSERVE_PY = os.path.join(ROOT, ".venv-kserve", "bin", "python")
KSERVE_SCRIPT = """
import logging, sys, time
logging.disable(logging.INFO)
from kserve_storage import Storage
t = time.perf_counter()
Storage.download(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t)
"""


def peak_rss_mb(pgid: int) -> float:
    """The largest VmHWM (peak resident set) in a process group: the worker's, MB."""
    best = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        best = max(best, int(line.split()[1]))
        except (OSError, IndexError, ValueError):
            continue
    return best / 1024


def first_200(model_path: str, width: int, env: Dict[str, str], log: str
              ) -> Tuple[float, float, str]:
    """Start ``tfserverless serve`` and time process start -> first 200 on a TF Serving REST
    predict: (seconds, worker peak RSS MB, its cold-start log lines)."""
    import http.client

    port = free_port()
    body = json.dumps({"instances": [[0.5] * width]}).encode()
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", LOG_LEVEL="INFO", WORKERS="1",
                SERVICE_NAME="big", MODEL_PATH=model_path,
                MODEL_CACHE_DIR=tempfile.mkdtemp(prefix="cache-", dir=os.path.dirname(log)),
                **env)
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tfserverless", "serve", "--host",
                                 "127.0.0.1", "--port", str(port)], env=full, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - t0 > 900:
                raise RuntimeError(f"server ended or hung; see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/v1/models/big:predict", body=body)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
        shutil.rmtree(full["MODEL_CACHE_DIR"], ignore_errors=True)
    with open(log, errors="replace") as f:
        lines = [ln.strip() for ln in f if "cold start:" in ln or "fetched " in ln]
    return seconds, rss, " / ".join(lines)


def kserve(uri: str, env: Dict[str, str], work: str) -> Optional[float]:
    """``kserve_storage.Storage.download`` of ``uri`` (its own venv): seconds, None if absent."""
    if not os.path.exists(KSERVE_PY):
        return None
    out = tempfile.mkdtemp(prefix="kserve-", dir=work)
    try:
        run = subprocess.run([KSERVE_PY, "-c", KSERVE_SCRIPT, uri, out], capture_output=True,
                             text=True, env=dict(os.environ, **env), timeout=900)
        if run.returncode != 0:
            print(f"    kserve {uri}: failed: {run.stderr.strip().splitlines()[-1:]}")
            return None
        return float(run.stdout.split()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


FETCH_SCRIPT = """
import os, resource, sys, time
from tfserverless import storage
from tfserverless.config import Config
t = time.perf_counter()
got = storage.fetch_model(Config.from_environ(os.environ))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
#: (FETCH_CONNECTIONS, FETCH_PART_BYTES MiB) tried by --sweep: connections at 8 MiB, then parts
SWEEP = [(4, 8), (8, 8), (16, 8), (32, 8), (16, 4), (16, 16), (16, 32)]


def sweep(size_mb: int, rate: float) -> str:
    """The fetch alone (a fresh process each: its time and peak RSS) from s3 through the
    throttle, prefix and .tar.gz, for each setting in ``SWEEP``."""
    _, _, forms = model(size_mb)
    work = tempfile.mkdtemp(prefix="sweep-")
    stores = Stores(work, rate, ["s3"])
    out = [f"### FETCH_CONNECTIONS x FETCH_PART_BYTES: the fetch alone, {size_mb} MiB, s3, "
           f"{rate / 1e6:.0f} MB/s a connection", "",
           "| connections | part | prefix | prefix peak RSS | .tar.gz | .tar.gz peak RSS |",
           "|---|---|---|---|---|---|"]
    try:
        stores.put_tree("s3", "model/", forms["prefix"])
        stores.put("s3", "model.tar.gz", forms[".tar.gz"])
        for conns, part in SWEEP:
            cells = []
            for key in ("model/", "model.tar.gz"):
                env = dict(os.environ, **stores.env("s3"), MODEL_PATH=stores.url("s3", key),
                           FETCH_CONNECTIONS=str(conns), FETCH_PART_BYTES=f"{part}MiB",
                           MODEL_CACHE_DIR=tempfile.mkdtemp(dir=work), LOG_LEVEL="WARNING")
                secs, rss = subprocess.run([sys.executable, "-c", FETCH_SCRIPT], env=env,
                                           check=True, capture_output=True, text=True
                                           ).stdout.split()
                shutil.rmtree(env["MODEL_CACHE_DIR"])
                cells += [f"{float(secs):.1f} s", f"{float(rss):.0f} MB"]
            out.append(f"| {conns} | {part} MiB | " + " | ".join(cells) + " |")
            print("  " + out[-1], flush=True)
    finally:
        stores.close()
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join(out)


FORMS = {"s3": ("prefix", ".tar.gz"), "gcs": ("prefix", ".tar.gz"), "http": (".tar.gz", ".tar")}


def run_size(size_mb: int, names: List[str], rate: float, conns: int, only_s3_prefix: bool
             ) -> Tuple[Dict[str, float], List[Dict[str, object]]]:
    local_dir, width, forms = model(size_mb)
    work = tempfile.mkdtemp(prefix=f"coldstart-{size_mb}-")
    stores = Stores(work, rate, names)
    rows: List[Dict[str, object]] = []
    try:
        t_local, rss_local, _ = first_200(local_dir, width, {}, os.path.join(work, "local.log"))
        base = {"size_mb": size_mb, "bytes": nbytes(local_dir), "local": t_local,
                "local_rss": rss_local}
        print(f"  {size_mb} MiB: local disk -> first 200 {t_local:.1f} s, "
              f"peak RSS {rss_local:.0f} MB", flush=True)
        for name in names:
            for form in FORMS[name]:
                if only_s3_prefix and (name, form) != ("s3", "prefix"):
                    continue
                key = "model/" if form == "prefix" else "model" + form
                if form == "prefix":
                    stores.put_tree(name, key, forms[form])
                    objs = [(key + rel, size) for rel, size in objects_of(forms[form])]
                else:
                    stores.put(name, key, forms[form])
                    objs = [(key, os.path.getsize(forms[form]))]
                lim = limit(stores, name, objs, conns)
                log = os.path.join(work, f"{name}{form}.log")
                ours, rss, line = first_200(stores.url(name, key), width, stores.env(name), log)
                ks = kserve(stores.url(name, key), stores.env(name), work)
                row: Dict[str, object] = dict(
                    store=name, form=form, mb=sum(s for _, s in objs) / 1e6, limit=lim,
                    ours=ours, rss=rss, kserve=ks, line=line,
                    target=t_local + (1.5 if form == "prefix" else 2.5) * lim)
                if name == "s3" and form == "prefix":
                    row["one_stream"] = first_200(stores.url(name, key), width, dict(
                        stores.env(name), FETCH_CONNECTIONS="1"), log + ".1")[0]
                rows.append(row)
                print(f"    {name} {form}: limit {lim:.1f} s, ours {ours:.1f} s (target "
                      f"<= {row['target']:.1f}), KServe download "
                      f"{'-' if ks is None else f'{ks:.1f} s'}, peak RSS {rss:.0f} MB"
                      f"\n      {line}", flush=True)
    finally:
        stores.close()
        shutil.rmtree(work, ignore_errors=True)
    return base, rows


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(base: Dict[str, float], rows: List[Dict[str, object]], rate: float, conns: int
          ) -> str:
    out = [f"### {base['size_mb']} MiB SavedModel ({base['bytes'] / 1e6:.0f} MB of files), "
           f"{rate / 1e6:.0f} MB/s a connection, FETCH_CONNECTIONS={conns}",
           "", f"Local disk -> first 200: **{base['local']:.1f} s**, worker peak RSS "
           f"{base['local_rss']:.0f} MB.", "",
           "| store | form | MB | limit | ours -> first 200 | target | KServe download (+ local) "
           "| one stream | peak RSS (vs local) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ks = r["kserve"]
        kcell = "-" if ks is None else (
            f"{ks:.1f} s ({ks + base['local']:.1f} s): ours "
            f"{verdict(float(r['ours']) < ks + base['local'])}")  # type: ignore[operator]
        one = f"{r['one_stream']:.1f} s" if "one_stream" in r else "-"
        out.append(
            f"| {r['store']} | {r['form']} | {r['mb']:.0f} | {r['limit']:.1f} s | "
            f"**{r['ours']:.1f} s** | <= {r['target']:.1f} s: "
            f"{verdict(float(r['ours']) <= float(r['target']))} | {kcell} | {one} | "  # type: ignore[arg-type]
            f"{r['rss']:.0f} MB ({float(r['rss']) - base['local_rss']:+.0f}): "  # type: ignore[arg-type]
            f"{verdict(float(r['rss']) - base['local_rss'] <= 256)} |")  # type: ignore[arg-type]
    out += [""] + [f"- {r['store']} {r['form']}: `{r['line']}`" for r in rows]
    return "\n".join(out)


def plot(points: List[Tuple[Dict[str, float], Dict[str, object]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gib = [b["bytes"] / (1 << 30) for b, _ in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = [("ours (s3 prefix) -> first 200", [r["ours"] for _, r in points], "o-"),
              ("KServe download + our local start",
               [(r["kserve"] or 0) + b["local"] for b, r in points], "s--"),  # type: ignore
              ("store's limit + local start", [r["limit"] + b["local"] for b, r in points], ":"),  # type: ignore
              ("ours, one stream (before)", [r.get("one_stream") for _, r in points], "x-."),
              ("local disk -> first 200", [b["local"] for b, _ in points], "^-")]
    for label, ys, style in series:
        ax.plot(gib, ys, style, label=label)
    ax.set_xlabel("SavedModel size (GiB)")
    ax.set_ylabel("seconds to first 200")
    ax.set_title("Cold start, 32 MB/s a connection (2 cores, loopback)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024", help="MiB, comma-separated (every store)")
    ap.add_argument("--plot", default="", help="MiB sizes for the figure (s3 prefix only)")
    ap.add_argument("--rate", type=float, default=32.0, help="MB/s a connection")
    ap.add_argument("--stores", default="s3,gcs,http")
    ap.add_argument("--connections", type=int, default=16, help="the limit's N")
    ap.add_argument("--sweep", action="store_true", help="settings swept at the first size")
    args = ap.parse_args()
    rate, names = args.rate * 1e6, args.stores.split(",")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"cold start: sizes {sizes} MiB, stores {names}, {args.rate:g} MB/s a connection")
    reports, points = [], []
    for size in sizes:
        base, rows = run_size(size, names, rate, args.connections, False)
        reports.append(table(base, rows, rate, args.connections))
        points += [(base, r) for r in rows if (r["store"], r["form"]) == ("s3", "prefix")]
    for size in [int(s) for s in args.plot.split(",") if s]:
        if size not in sizes:
            base, rows = run_size(size, ["s3"], rate, args.connections, True)
            points.append((base, rows[0]))
    if args.sweep:
        reports.append(sweep(sizes[0], rate))
    text = "\n\n".join(reports)
    if len(points) > 1:
        points.sort(key=lambda p: p[0]["bytes"])
        plot(points, os.path.join(ROOT, "benchmarks", "results", "coldstart.png"))
        text += "\n\n### Time vs size (s3 prefix)\n\n| GiB | local | limit + local | ours | " \
                "KServe download + local | one stream |\n|---|---|---|---|---|---|\n" + "\n".join(
                    f"| {b['bytes'] / (1 << 30):.2f} | {b['local']:.1f} | "
                    f"{r['limit'] + b['local']:.1f} | {r['ours']:.1f} | "  # type: ignore
                    f"{(r['kserve'] or 0) + b['local']:.1f} | {r.get('one_stream', 0):.1f} |"  # type: ignore
                    for b, r in points) + "\n\n![cold start vs size](coldstart.png)"
    write_result("coldstart.md", "# Cold start at real model sizes (`benchmarks/coldstart_bench.py`)"
                 "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
