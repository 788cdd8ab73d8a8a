"""A lean closed-loop HTTP/1.1 load client: ``concurrency`` keep-alive connections on one
uvloop event loop, each sending the same request back to back; throughput and latencies.

Written on raw streams so the client costs little next to the servers it measures (a thread
per connection with http.client tops out near the rates measured here on 2 cores)."""

from __future__ import annotations

import asyncio
import time
from typing import Dict, List, Optional, Tuple


def request_bytes(path: str, body: bytes, headers: Optional[Dict[str, str]] = None) -> bytes:
    h = {"Host": "127.0.0.1", "Content-Length": str(len(body)), "Connection": "keep-alive"}
    h.update(headers or {})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + body


async def _one_connection(port: int, raw: bytes, stop: float, lat: List[float],
                          errors: List[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop and not errors:
            t0 = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status != 200:
                errors.append(f"{status} {body[:200]!r}")
                return
            lat.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _run(port: int, raw: bytes, concurrency: int, seconds: float) -> Tuple[float, List[float]]:
    lat: List[float] = []
    errors: List[str] = []
    t0 = time.monotonic()
    await asyncio.gather(*(_one_connection(port, raw, t0 + seconds, lat, errors)
                           for _ in range(concurrency)))
    if errors:
        raise RuntimeError(errors[0])
    return len(lat) / (time.monotonic() - t0), sorted(lat)


def load(port: int, path: str, body: bytes, *, concurrency: int = 4, seconds: float = 3.0,
         headers: Optional[Dict[str, str]] = None) -> Tuple[float, List[float]]:
    """(requests a second, sorted latencies in seconds)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the bench venv has it
        pass
    return asyncio.run(_run(port, request_bytes(path, body, headers), concurrency, seconds))


def percentile(lat: List[float], q: float) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")
