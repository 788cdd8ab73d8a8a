"""One asyncio helper shared by the model holder and admission: completing a waiter's future
from another thread (through ``loop.call_soon_threadsafe``) only if nobody else did."""

from __future__ import annotations

import asyncio


def resolve(fut: asyncio.Future[None]) -> None:
    """Complete ``fut`` unless it already is (a waiter may have timed out meanwhile)."""
    if not fut.done():
        fut.set_result(None)


__all__ = ["resolve"]
