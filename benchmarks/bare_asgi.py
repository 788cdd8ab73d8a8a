"""The server's ceiling: an ASGI app on ``tfserverless serve``'s own server (gunicorn, uvicorn
worker) that reads the request body and answers a fixed two-byte JSON, doing nothing else.
Whatever rate it reaches on a body is the most any app on that server can reach on it."""

from typing import Any, Awaitable, Callable, Dict

Message = Dict[str, Any]


async def app(scope: Message, receive: Callable[[], Awaitable[Message]],
              send: Callable[[Message], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    b"".join(chunks)  # as an app must, to parse it
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})
