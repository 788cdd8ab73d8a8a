"""Adaptive request batching (EAS ``metadata.rpc.batching``): ``policy`` (which requests may
share a call, which group goes next, how a group runs and is split back), ``threaded`` (sync
servers: waiters block their own thread) and ``aio`` (ASGI: waiters await on the event loop;
not named ``asyncio`` so it never reads as the standard library's)."""
