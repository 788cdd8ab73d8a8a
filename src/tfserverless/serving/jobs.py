"""How an admitted job runs: the admission slot held around it, the model waited for (up to
``MODEL_LOAD_TIMEOUT`` and the request's deadline), the body prepared inside the slot with what
that adds to the bytes in flight counted, then the predictor; a sync server's thread waits in
line, an ASGI server's request awaits, holding no thread."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

from ..backends.holder import ModelHolder
from ..config import Config
from ..messages import Request, Response, is_encoded
from .admission import Admission, Held, Watch
from .predictor import Context, Predictor
from .routes.common import JSON_WEIGHT, Job


class Runner:
    def __init__(self, config: Config, holder: ModelHolder, admission: Admission,
                 predictor: Predictor) -> None:
        self.config, self.holder, self.admission, self.predictor = config, holder, admission, predictor

    def _load_wait(self, deadline: float) -> float:
        return max(0.0, min(self.config.load_timeout, deadline - time.monotonic()))

    def _prepare(self, req: Request, job: Job, held: Held) -> None:
        """Within the admitted slot: the body inflated and checked (``job.prepare``), and
        what that adds to the bytes in flight counted: the inflated size, and JSON at what
        parsing it takes (``JSON_WEIGHT``); 450 beyond ``MAX_INFLIGHT_BYTES``."""
        if job.prepare is None:
            return
        raw = len(req.body)
        json_bytes = job.prepare(req)
        extra = max(0, len(req.body) - raw) + json_bytes * (JSON_WEIGHT - 1)
        if extra:
            self.admission.reserve_bytes(held, extra)

    def run_sync(self, req: Request, job: Job, held: Held) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline(req.timeout))
        deadline = ctx.deadline
        if not job.admitted:
            return job.run(self.holder.get(wait=self._load_wait(deadline)), ctx)
        req.infer = True
        if job.check is not None:
            job.check(self.holder.get(wait=self._load_wait(deadline)))
        t0 = time.perf_counter()
        adm.acquire(deadline, held.peer, rated=not req.warmup)  # a replay is not traffic
        try:
            self._prepare(req, job, held)
            model = self.holder.get(wait=self._load_wait(deadline))
            adm.check_deadline(deadline)
            ctx.queued = time.perf_counter() - t0
            resp = job.run(model, ctx)
        finally:
            adm.release(held.peer)
        # a sync server cannot answer while the model runs; past RPC_KEEPALIVE the answer is
        # the 408 an ASGI server would have sent at the deadline
        adm.check_deadline(deadline)
        return resp

    async def run_async(self, req: Request, job: Job, watch: Optional[Watch],
                        held: Held) -> Response:
        adm = self.admission
        ctx = Context(adm.deadline(req.timeout))
        deadline = ctx.deadline
        t0 = time.perf_counter()
        if self.holder.model is None:
            await self.holder.wait_async(self._load_wait(deadline))
        model = self.holder.ready()
        if not job.admitted:
            return job.run(model, ctx)
        req.infer = True
        if job.check is not None:
            job.check(model)
        await adm.acquire_async(deadline, watch, held.peer, rated=not req.warmup)
        pred = self.predictor
        try:
            if job.prepare is not None and is_encoded(req):
                # inflating costs time: in a thread (zlib lets the event loop run meanwhile)
                await asyncio.get_running_loop().run_in_executor(
                    pred.executor, self._prepare, req, job, held)
            else:
                self._prepare(req, job, held)
        except BaseException:
            adm.release(held.peer)
            raise
        ctx.queued = time.perf_counter() - t0
        if pred.abatcher is not None and job.codec is not None:
            try:
                return await pred.predict_batched(req, model, ctx, watch, job.codec,
                                                 job.call_for(model))
            finally:
                adm.release(held.peer)
        handed_off = False
        try:
            if pred.runs_inline(req):
                return job.run(model, ctx)  # cheaper than the hand-off to a thread would be
            ctx.contended = adm.running > 1
            work = pred.executor.submit(job.run, model, ctx)
            waiter = asyncio.wrap_future(work)
            waiter.add_done_callback(_retrieve)
            remaining = deadline - time.monotonic()
            done, _ = await asyncio.wait({waiter}, timeout=None if remaining == float("inf")
                                         else max(0.0, remaining))
            if done:
                return work.result()
            handed_off = True  # the model call cannot be stopped: its slot frees when it ends
            work.add_done_callback(lambda _: adm.release(held.peer))
            raise adm.timeout_error()
        finally:
            if not handed_off:
                adm.release(held.peer)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # a predict that finished after its 408 was sent: nobody awaits it; keep asyncio quiet
    if not fut.cancelled():
        fut.exception()


__all__ = ["Runner"]
