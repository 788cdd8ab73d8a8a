"""The prediction path shared by every server: decode and check a body, run the model
(batched with concurrent requests when ``RPC_BATCHING`` is on), encode the reply, time it
(``Server-Timing``, metrics), and judge whether an async server should run it on its event
loop.  ``Service`` decides *whether* a request may run (routing, auth, admission); this
decides *how*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional, Tuple

from ..backends.servable import Servable
from ..batching.aio import AsyncBatcher
from ..batching.policy import Policy
from ..batching.threaded import Batcher
from ..config import Config
from ..messages import Request, Response
from ..protocol.base import Call, Codec, Decoded
from ..protocol.eas import EAS
from .admission import Admission, Watch
from .metrics import Metrics

log = logging.getLogger("tfserverless")

#: a request expected to take less than this runs on an async server's event loop (see
#: ``Predictor.runs_inline``): 2 ms of delay for requests queued behind it is the most we accept
INLINE_SECONDS = 0.002
#: warm-up files are EAS requests (TF Serving's are converted to them)
WARMUP_CODEC: Codec = EAS()
NO_CALL = Call()


class Context:
    """What a prediction knows of its way through the service: its deadline, how long it
    queued."""

    __slots__ = ("contended", "deadline", "queued")

    def __init__(self, deadline: float = float("inf")) -> None:
        self.deadline = deadline
        self.queued = 0.0
        self.contended = False  # runs in a thread beside other predictions


class Predictor:
    def __init__(self, config: Config, admission: Admission, metrics: Metrics,
                 warmup: Dict[str, Any], *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.config = config
        # what predicts are timed with (Server-Timing, metrics, the inline estimate); tests
        # replace it to decide what a predict cost
        self.clock = clock
        self.admission = admission
        self.metrics = metrics
        self.warmup = warmup
        self.batcher: Optional[Batcher] = None
        self.abatcher: Optional[AsyncBatcher] = None  # ASGI servers' way to wait for it
        policy = None
        if config.rpc_batching:
            policy = Policy(max_batch_size=config.rpc_max_batch_size,
                            max_batch_timeout=config.rpc_max_batch_timeout_ms / 1000.0,
                            max_calls=config.rpc_worker_threads,
                            timeout_error=admission.timeout_error, observe=metrics.runtime)
            self.batcher = Batcher(policy)
        # predictions run here on ASGI servers: a thread for each admitted request, none of
        # which health or queued requests ever occupy (threads start on first use)
        self.executor = ThreadPoolExecutor(admission.limits.workers, "predict")
        if policy is not None:
            self.abatcher = AsyncBatcher(policy, self.executor, inline=INLINE_SECONDS)
        self._first_request_logged = False
        # moving averages of recent predicts: seconds and body bytes (None until the first)
        self._predict_seconds: Optional[float] = None
        self._predict_bytes = 1.0

    @property
    def waiting(self) -> int:
        """Predictions waiting for a batch."""
        b = self.abatcher.waiting if self.abatcher is not None else 0
        return b + (self.batcher.waiting if self.batcher is not None else 0)

    def runs_inline(self, req: Request) -> bool:
        """Whether an async server should run a predict on its event loop instead of handing
        it to a thread.  A small model answers in less time than that hand-off costs; a slow
        one must not stall the loop.  So: when recent predicts, scaled to this body's size,
        took under ``INLINE_SECONDS``.  (With batching on, only decode and encode are
        judged so: the model call is the batcher's.)"""
        seconds = self._predict_seconds
        if seconds is None:
            return False
        return seconds * max(1.0, len(req.body) / self._predict_bytes) < INLINE_SECONDS

    def _observe(self, seconds: float, nbytes: int, contended: bool) -> None:
        """``contended``: it ran in a thread beside other predictions, so its wall time may
        include waits for the GIL: such a time may only lower the estimate (else a start
        under load would keep a fast model off the loop for good)."""
        est = self._predict_seconds
        if est is None:
            self._predict_seconds, self._predict_bytes = seconds, float(max(nbytes, 1))
        elif not contended or seconds < est:  # races between threads only blur an estimate
            self._predict_seconds = est + 0.2 * (seconds - est)
            self._predict_bytes += 0.2 * (max(nbytes, 1) - self._predict_bytes)

    async def predict_batched(self, req: Request, model: Servable, ctx: Context,
                              watch: Optional[Watch], codec: Codec, call: Call) -> Response:
        """A prediction through the ``AsyncBatcher``: decode and encode on the loop (in a
        thread when this body looks costly), the model call shared with other requests."""
        assert self.abatcher is not None
        t0 = self.clock()
        inline = self.runs_inline(req)
        if inline:
            d = codec.decode(req.body, req.headers, model, call)
        else:
            ctx.contended = self.admission.running > 1
            d = await asyncio.get_running_loop().run_in_executor(
                self.executor, codec.decode, req.body, req.headers, model, call)
        t1 = self.clock()
        result, waited = await self.abatcher.run(model.run, d.sig, d.feeds, d.outputs,
                                                 deadline=ctx.deadline, gone=watch)
        t2 = self.clock()
        timing = {"decode": t1 - t0, "batch": waited, "model": t2 - t1 - waited}
        encode = (codec, d, call)
        if inline:
            return self._respond(req, result, encode, ctx, timing, t0, own=t2 - t1)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: self._respond(req, result, encode, ctx, timing, t0, own=t2 - t1))

    def run_predict(self, model: Servable, body: bytes, ctx: Optional[Context] = None,
                    timing: Optional[Dict[str, float]] = None, *, codec: Codec = WARMUP_CODEC,
                    call: Call = NO_CALL, headers: Optional[Dict[str, str]] = None,
                    ) -> Tuple[Decoded, Dict[str, Any]]:
        """Decode, validate, run (batched with other requests when batching is on): the one
        path traffic and warm-up share.  ``timing`` gets decode, batch-wait and model seconds."""
        t0 = self.clock()
        d = codec.decode(body, headers or {}, model, call)
        sig, feeds, outputs = d.sig, d.feeds, d.outputs
        t1 = self.clock()
        batched = 0.0
        if self.batcher is None:
            result = model.run(sig, feeds, outputs)
            self.metrics.runtime(1, self.clock() - t1)
        else:
            ctx = ctx or Context()
            result, batched = self.batcher.run(model.run, sig, feeds, outputs,
                                               deadline=ctx.deadline)
        if timing is not None:
            timing.update(decode=t1 - t0, batch=batched, model=self.clock() - t1 - batched)
        return d, result

    def predict(self, req: Request, model: Servable, ctx: Context, codec: Codec,
                call: Call) -> Response:
        t0 = self.clock()
        timing: Dict[str, float] = {}
        d, outputs = self.run_predict(model, req.body, ctx, timing, codec=codec, call=call,
                                      headers=req.headers)
        return self._respond(req, outputs, (codec, d, call), ctx, timing, t0)

    def _respond(self, req: Request, outputs: Dict[str, Any], encode: Tuple[Codec, Decoded, Call],
                 ctx: Context, timing: Dict[str, float], t0: float, own: float = 0.0) -> Response:
        """Encode the reply; ``own``: seconds of this request's run that were not its own
        work on the loop (a batch's model call), left out of the inline estimate."""
        t1 = self.clock()
        codec, d, call = encode
        body, headers = codec.encode(outputs, d, call)
        resp = Response(200, body, headers)
        t2 = self.clock()
        queued = ctx.queued + timing["batch"]
        if not req.warmup:  # /metrics counts no warm-up replay
            self.metrics.queued(queued)
        if self.config.server_timing:
            resp.headers["Server-Timing"] = (
                f"queue;dur={queued * 1e3:.3f}, decode;dur={timing['decode'] * 1e3:.3f}, "
                f"model;dur={timing['model'] * 1e3:.3f}, encode;dur={(t2 - t1) * 1e3:.3f}")
        # what inlining decides by: this request's own work, not its waits
        self._observe(t2 - t0 - timing["batch"] - own, len(req.body), ctx.contended)
        if not self._first_request_logged and not req.warmup:
            self._first_request_logged = True
            w = self.warmup
            log.info("first request: %.1f ms (%s)", (self.clock() - t0) * 1e3,
                     f"after warm-up of {w['replayed']} replays" if w.get("replayed")
                     else "no warm-up")
        return resp


__all__ = ["INLINE_SECONDS", "Context", "Predictor"]
