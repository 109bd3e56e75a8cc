"""The HTTP floor: the least work a Python server can do for one of our requests.

A bare ASGI callable (no framework, no routing, no validation) on uvicorn with uvloop
and httptools. It still reads the whole body and parses it with orjson, so the floor
includes the JSON decode every real server must do, then returns a constant prediction.
Every other server's latency and throughput is reported relative to this one.

Run: ``uvicorn floor_app:app --loop uvloop --http httptools --lifespan off``.
"""

from typing import Any

import orjson

RESPONSE = orjson.dumps({"predictions": [[0.5]]})
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(RESPONSE)).encode()),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    # A Triton binary body (a JSON header, then raw tensor bytes): the JSON part is what
    # a real server must parse; the tensor bytes are only read.
    header = next((v for k, v in scope["headers"] if k == b"inference-header-content-length"),
                  None)
    orjson.loads(body if header is None else body[:int(header)])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE})
