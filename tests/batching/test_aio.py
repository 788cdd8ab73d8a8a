"""AsyncBatcher, fast lane: the batching policy awaited on a real event loop, model calls in
real threads (a numpy 'model' that sleeps)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import numpy as np

from tfserverless.batching.aio import ALONE_LIMIT, AsyncBatcher
from tfserverless.errors import BadRequest, ClientGone, RequestTimeout

from .test_threaded import SIG, Model, batcher, rows


def make(seconds: float = 0.05, **kw: Any) -> tuple:  # type: ignore[type-arg]
    m = Model(seconds)
    return m, AsyncBatcher(batcher(**kw).policy, ThreadPoolExecutor(4))


async def call(b: AsyncBatcher, m: Model, x: np.ndarray, **kw: Any) -> Any:
    try:
        return (await b.run(m.run, SIG, {"x": x}, ["y"], **kw))[0]["y"]
    except Exception as e:
        return e


def test_arrivals_while_a_call_runs_go_together_and_get_their_own_rows() -> None:
    m, b = make(0.1)
    xs = [rows(1 + i % 3, seed=i) for i in range(6)] + [-rows(1)]

    async def main() -> List[Any]:
        first = asyncio.ensure_future(call(b, m, xs[0]))
        await asyncio.sleep(0.03)  # the first call runs in a thread meanwhile
        rest = await asyncio.gather(*(call(b, m, x) for x in xs[1:]))
        return [await first, *rest]

    got = asyncio.run(main())
    for x, y in zip(xs[:6], got[:6]):
        assert np.array_equal(y, x * 2)
    assert isinstance(got[6], BadRequest)  # it failed alone
    assert m.calls[:2] == [1, sum(x.shape[0] for x in xs[1:])]
    assert sorted(m.calls[2:]) == sorted(x.shape[0] for x in xs[1:])  # rerun alone
    assert b.calls == 0 and b.waiting == 0


def test_waiters_past_their_deadline_or_whose_client_left_never_run() -> None:
    m, b = make(0.2)

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        left = loop.create_future()
        first = asyncio.ensure_future(call(b, m, rows(1)))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(call(b, m, rows(1), deadline=time.monotonic() + 0.05))
        gone = asyncio.ensure_future(call(b, m, rows(1), gone=lambda: left))
        await asyncio.sleep(0.01)
        left.set_result(None)  # the client disconnects
        t0 = time.monotonic()
        out = [await late, time.monotonic() - t0, await gone, await first]
        await asyncio.sleep(0.25)
        return out

    late, took, gone, first = asyncio.run(main())
    assert isinstance(late, RequestTimeout) and took < 0.15  # answered at its deadline
    assert isinstance(gone, ClientGone)
    assert np.array_equal(first, rows(1) * 2) and m.calls == [1]


def test_no_load_runs_at_once_as_without_batching() -> None:
    m, b = make(0.0)

    async def main() -> None:
        for i in range(ALONE_LIMIT + 20):
            assert np.array_equal(await call(b, m, rows(1, seed=i)), rows(1, seed=i) * 2)

    asyncio.run(main())
    assert m.calls == [1] * (ALONE_LIMIT + 20)
    assert b._skipped > 0  # lone requests skipped the extra turn of the loop
