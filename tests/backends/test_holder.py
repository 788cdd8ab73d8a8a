"""ModelHolder, fast lane: a failed load is retried by its timer, with no traffic at all."""

from __future__ import annotations

import time
from typing import Any, List

from tfserverless.backends.holder import ModelHolder
from tfserverless.errors import ModelUnavailable


def test_a_failed_load_retries_by_itself() -> None:
    calls: List[float] = []
    model = object()

    def loader() -> Any:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ModelUnavailable("not uploaded yet")
        return model

    holder = ModelHolder(loader, backoff=0.05, max_backoff=0.1)
    holder.start()
    deadline = time.monotonic() + 5
    while holder.model is None and time.monotonic() < deadline:
        time.sleep(0.01)  # nothing but the holder's own timers may start a load
    assert holder.model is model and len(calls) == 3, calls
    assert holder.error is None and holder.failures == 2


def test_readiness_waits_for_a_warm_up_of_the_serving_path() -> None:
    model = object()
    holder = ModelHolder(lambda: model)  # type: ignore[arg-type,return-value]
    holder.hold()  # an adapter's warm-up through its server: begun before the load
    assert holder.wait(5) and holder.model is model
    assert holder.state == "warming" and not holder.serving  # traffic is served, readiness waits
    holder.release()
    assert holder.state == "ready" and holder.serving
    holder.release()  # one too many never goes below none
    holder.hold()
    assert not holder.serving
