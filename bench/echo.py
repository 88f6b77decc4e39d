"""The reference for bench/service: a bare ASGI app that only echoes the request's JSON, served by the same
uvicorn, with the same settings and the same worker supervisor as ``ccweb serve``.

    python bench/echo.py --port PORT [--host 127.0.0.1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Scope = dict[str, Any]


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        payload = json.dumps({"echo": json.loads(body or b"null")}).encode()
        status = 200
    except ValueError:
        payload, status = b'{"error":"not JSON"}', 400
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def create() -> Any:
    return echo


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/echo.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the workers import this module as "echo"
    from ccweb.server import run_workers, uvicorn_options  # noqa: PLC0415

    run_workers("echo:create", **uvicorn_options(args.host, args.port, args.workers))


if __name__ == "__main__":
    main()
