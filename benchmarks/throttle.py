"""A TCP proxy on loopback that caps what each connection carries downstream (bytes a second),
as object stores cap a single stream while their aggregate grows with connections.

    python benchmarks/throttle.py LISTEN_PORT UPSTREAM_PORT [MB_PER_S]

or ``Throttle(upstream_port, rate).start()`` in a thread (``.port``, ``.stop()``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Optional

CHUNK = 64 << 10


class Throttle:
    def __init__(self, upstream_port: int, rate: float, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.rate = rate  # bytes a second, per connection, upstream -> client
        self.port = port
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="throttle")

    def start(self) -> Throttle:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close every connection, then the loop (quietly: no task left pending)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.get_running_loop().stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w, 0.0), self._pipe(up_r, writer, self.rate),
                             return_exceptions=True)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    rate: float) -> None:
        t0, sent = time.monotonic(), 0
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
                if rate > 0:
                    sent += len(data)
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()


if __name__ == "__main__":
    t = Throttle(int(sys.argv[2]), float(sys.argv[3] if len(sys.argv) > 3 else 32) * 1e6,
                 int(sys.argv[1])).start()
    print(f"throttling 127.0.0.1:{t.port} -> :{t.upstream_port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        t.stop()
