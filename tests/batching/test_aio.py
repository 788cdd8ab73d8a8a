"""AsyncBatcher, fast lane: the batching policy awaited on a real event loop, model calls in
real threads (a numpy 'model' a test can hold in its call)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from tfserverless.batching.aio import ALONE_LIMIT, AsyncBatcher
from tfserverless.errors import BadRequest, ClientGone, RequestTimeout

from .test_threaded import SIG, Model, batcher, rows


def make(**kw: Any) -> tuple:  # type: ignore[type-arg]
    return Model(), AsyncBatcher(batcher(**kw).policy, ThreadPoolExecutor(4))


async def call(b: AsyncBatcher, m: Model, x: np.ndarray, **kw: Any) -> Any:
    try:
        return (await b.run(m.run, SIG, {"x": x}, ["y"], **kw))[0]["y"]
    except Exception as e:
        return e


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a state the loop or a model thread reaches (a generous timeout, never a fixed
    sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.001)


def test_arrivals_while_a_call_runs_go_together_and_get_their_own_rows() -> None:
    m, b = make()
    xs = [rows(1 + i % 3, seed=i) for i in range(6)] + [-rows(1)]

    async def main() -> List[Any]:
        m.gate.clear()  # the first call is held in its thread while the rest arrive
        first = asyncio.ensure_future(call(b, m, xs[0]))
        await until(lambda: m.calls == [1], "the first call started")
        rest = [asyncio.ensure_future(call(b, m, x)) for x in xs[1:]]
        await until(lambda: b.waiting == len(rest), "the rest waiting for a batch")
        m.gate.set()
        return [await first, *(await asyncio.gather(*rest))]

    got = asyncio.run(main())
    for x, y in zip(xs[:6], got[:6]):
        assert np.array_equal(y, x * 2)
    assert isinstance(got[6], BadRequest)  # it failed alone
    assert m.calls[:2] == [1, sum(x.shape[0] for x in xs[1:])]
    assert sorted(m.calls[2:]) == sorted(x.shape[0] for x in xs[1:])  # rerun alone
    assert b.calls == 0 and b.waiting == 0


def test_waiters_past_their_deadline_or_whose_client_left_never_run() -> None:
    m, b = make()

    async def main() -> List[Any]:
        left = asyncio.get_running_loop().create_future()
        m.gate.clear()  # the first call is held while the others wait
        first = asyncio.ensure_future(call(b, m, rows(1)))
        await until(lambda: m.calls == [1], "the first call started")
        late = asyncio.ensure_future(call(b, m, rows(1), deadline=time.monotonic() + 0.05))
        gone = asyncio.ensure_future(call(b, m, rows(1), gone=lambda: left))
        await until(lambda: b.waiting == 2, "both waiting for a batch")
        left.set_result(None)  # the client disconnects
        # both are answered while the first call is still held: at the deadline, at the
        # disconnect, not when a call ends
        out = list(await asyncio.wait_for(asyncio.gather(late, gone), 10))
        assert not first.done() and m.calls == [1] and b.waiting == 0
        m.gate.set()
        return [*out, await first]

    late, gone, first = asyncio.run(main())
    assert isinstance(late, RequestTimeout)
    assert isinstance(gone, ClientGone)
    assert np.array_equal(first, rows(1) * 2) and m.calls == [1]
    assert b.calls == 0 and b.waiting == 0  # nothing left that could still reach the model


def test_no_load_runs_at_once_as_without_batching() -> None:
    m, b = make()

    async def main() -> None:
        for i in range(ALONE_LIMIT + 20):
            assert np.array_equal(await call(b, m, rows(1, seed=i)), rows(1, seed=i) * 2)

    asyncio.run(main())
    assert m.calls == [1] * (ALONE_LIMIT + 20)
    assert b._skipped > 0  # lone requests skipped the extra turn of the loop


class PerRow:
    """A model whose call takes ``seconds`` a row; records the thread each call ran in."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran: List[Tuple[int, bool]] = []  # (rows, on the event loop's thread)

    def run(self, sig: Any, feeds: Dict[str, np.ndarray], outputs: Any) -> Dict[str, np.ndarray]:
        x = feeds["x"]
        self.ran.append((int(x.shape[0]), threading.current_thread() is threading.main_thread()))
        time.sleep(x.shape[0] * self.seconds)
        return {"y": x * 2}


async def warmed(b: AsyncBatcher, m: PerRow) -> None:
    """Recent calls of one row each, far under ``inline``; the batcher then runs at once."""
    for i in range(ALONE_LIMIT + 3):
        await b.run(m.run, SIG, {"x": rows(1, seed=i)}, ["y"])
    assert m.ran[-1] == (1, True)


def test_a_request_many_times_larger_than_recent_calls_runs_off_the_loop() -> None:
    # 4000 rows at 50 us a row is 200 ms: the event loop (every other connection, the health
    # probes) stalled for it because calls of one row had taken under 2 ms
    m, b = PerRow(50e-6), AsyncBatcher(batcher(max_calls=1).policy, ThreadPoolExecutor(2))

    async def main() -> None:
        await warmed(b, m)
        y, _ = await b.run(m.run, SIG, {"x": rows(4000)}, ["y"])
        assert np.array_equal(y["y"], rows(4000) * 2)

    asyncio.run(main())
    assert m.ran[-1] == (4000, False)


def test_a_batch_many_times_larger_than_recent_calls_runs_off_the_loop() -> None:
    m = PerRow(50e-6)
    b = AsyncBatcher(batcher(max_calls=1, max_batch_size=4096).policy, ThreadPoolExecutor(2))

    async def main() -> None:
        await warmed(b, m)
        await asyncio.gather(*(b.run(m.run, SIG, {"x": rows(250, seed=i)}, ["y"])
                               for i in range(16)))

    asyncio.run(main())
    assert (4000, False) in m.ran and not [r for r in m.ran if r[0] > 1 and r[1]]
