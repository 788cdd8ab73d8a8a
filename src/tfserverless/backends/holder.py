"""The holder that loads the model (a ``servable.Servable``) once, lazily, in the background,
with retry backoff; waiters block a thread (sync servers) or await (ASGI) without ever
occupying a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Callable, List, Optional

from ..errors import ModelUnavailable, TFServerlessError
from ..futures import resolve
from .servable import Servable

log = logging.getLogger("tfserverless")


class ModelHolder:
    """Single-flight lazy load with retry backoff.

    The first caller starts one background load; others wait for it (up to ``wait``) or get
    503 with Retry-After.  A failed load is retried after a backoff: by the next request, or
    by a timer so a model uploaded late is picked up without traffic.
    """

    def __init__(self, loader: Callable[[], Servable], *, wait: float = 600.0,
                 backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self._loader = loader
        self._wait = wait
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._callbacks: List[Callable[[], None]] = []
        self.model: Optional[Servable] = None
        self.error: Optional[str] = None
        self.failures = 0
        self._retry_at = 0.0
        self.started_at: Optional[float] = None
        self.loaded_at: Optional[float] = None
        self.after_load: List[Callable[[Servable], None]] = []
        self._holds = 0  # warm-ups of the serving path still running: readiness waits

    @property
    def state(self) -> str:
        if self.model is not None:
            return "warming" if self._holds else "ready"
        if self._thread is not None and self._thread.is_alive():
            return "loading"
        return "failed" if self.error else "idle"

    @property
    def serving(self) -> bool:
        """Ready for traffic: loaded, warmed up, and no warm-up of the serving path running
        (traffic is served meanwhile; readiness waits)."""
        return self.model is not None and not self._holds

    def hold(self) -> None:
        """A warm-up of the serving path begins: readiness waits for its ``release``."""
        with self._lock:
            self._holds += 1

    def release(self) -> None:
        with self._lock:
            self._holds = max(0, self._holds - 1)

    def start(self) -> None:
        """Begin loading in the background if nothing is loaded or loading (idempotent)."""
        with self._lock:
            if self.model is not None or (self._thread is not None and self._thread.is_alive()):
                return
            if self.error and time.monotonic() < self._retry_at:
                return
            self._done.clear()
            self.started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="model-load", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            model = self._loader()
            for hook in self.after_load:
                hook(model)
            self.model = model
            self.error = None
            self.loaded_at = time.monotonic()
        except TFServerlessError as e:
            self._failed(e.message)
        except Exception as e:  # a load must never kill the worker: report it and retry later
            log.exception("model load failed")
            self._failed(f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._done.set()
                callbacks, self._callbacks = self._callbacks, []
            for cb in callbacks:
                cb()

    def _failed(self, message: str) -> None:
        self.failures += 1
        delay = min(self._max_backoff, self._backoff * (2 ** (self.failures - 1)))
        self._retry_at = time.monotonic() + delay
        self.error = message
        log.error("model not loaded (attempt %d, retry in %.0fs): %s", self.failures, delay, message)
        timer = threading.Timer(delay, self._retry)
        timer.daemon = True
        timer.start()

    def _retry(self) -> None:
        """The backoff timer: its time has come, whatever the clock's rounding says (a timer
        may fire a hair before ``_retry_at``, and ``start`` would then do nothing)."""
        with self._lock:
            self._retry_at = 0.0
        self.start()

    def wait(self, seconds: float) -> bool:
        """Start if needed and wait up to ``seconds``; True when the model is ready."""
        self.start()
        self._done.wait(max(0.0, seconds))
        return self.model is not None

    async def wait_async(self, seconds: float) -> bool:
        """``wait`` for an event loop: no thread is held while the load runs."""
        self.start()
        if self.model is not None:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(resolve, fut)

        with self._lock:
            if self._done.is_set():
                return self.model is not None
            self._callbacks.append(wake)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(fut, max(0.0, seconds))
        return self.model is not None

    def load_now(self) -> Servable:
        """Load in the calling thread's time (init hooks): start, then wait."""
        self.start()
        return self.get(wait=self._wait)

    def get(self, *, wait: Optional[float] = None) -> Servable:
        if self.model is not None:
            return self.model
        self.start()
        self._done.wait(self._wait if wait is None else wait)
        return self.ready()

    def ready(self) -> Servable:
        """The model, or the 503 that says why not (loading, or the last load's error)."""
        if self.model is not None:
            return self.model
        if self.state == "loading":
            raise ModelUnavailable("the model is still loading; retry shortly", retry_after=2)
        retry = max(1, int(self._retry_at - time.monotonic() + 0.999))
        raise ModelUnavailable(f"the model could not be loaded: {self.error}", retry_after=retry)
