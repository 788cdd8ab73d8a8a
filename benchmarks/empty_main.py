"""The stack's ceiling: a functions-framework function that only reads the body and answers
(``BENCH_STACK=asgi``: as an ``async`` function on the ASGI server; otherwise Flask)."""

import os

if os.environ.get("BENCH_STACK") == "asgi":
    from functions_framework import aio
    from starlette.responses import Response

    @aio.http
    async def predict(request):  # type: ignore[no-untyped-def]
        await request.body()
        return Response(b"", media_type="application/octet-stream")

else:

    def predict(request):  # type: ignore[no-untyped-def]
        request.get_data()
        return b"", 200, {"Content-Type": "application/octet-stream"}
