"""Fuzz the device agent's request handling (``edgeformer/agent/server.py``, ``wire.py``, ``store.py``).

Each input becomes one HTTP request handed to the agent's real ASGI app in-process (what uvicorn hands it after
parsing the bytes off the socket): NUL-separated fields give the method and route, the path segment, the query,
the ``Authorization`` and ``Content-Length`` headers and the body (a JSON job spec, an upload); see
:func:`parse`. Every input gets a fresh store holding one model, so a well-formed job can be queued and an upload
whose sha256 matches is stored. One route also feeds the client's ``--device`` parser. The fault contract: every
request is answered with a JSON body, 4xx for a bad one, never a 500 and never an exception escaping the app;
``parse_device`` raises :class:`ConfigError`. Anything else is a finding. (``/v1/info`` is left out: it waits for
the job worker's device card, which this harness does not start.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
from urllib.parse import quote_from_bytes, unquote

from _harness import instrumented, json_mutator, main, scratch

with instrumented(__name__):
    from edgeformer.agent.server import AgentConfig, create_app
    from edgeformer.agent.store import ModelStore
    from edgeformer.agent.wire import parse_device
    from edgeformer.errors import ConfigError

NAME = "agent"
TOKEN = "fuzz-token-0123456789abcdef"
BLOB = b"a stored model\n"
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
_count = 0


def parse(data: bytes) -> tuple[bytes, ...]:
    """``route \\0 segment \\0 query \\0 authorization \\0 content-length \\0 body``; missing fields are empty.

    ``authorization``: ``TOKEN`` stands for the agent's token, empty for no header. ``content-length``: ``=``
    for the body's length, empty for no header. ``segment``: ``=`` in ``PUT models`` for the body's sha256.
    """
    fields = data.split(b"\0", 5)
    return tuple(fields + [b""] * (6 - len(fields)))


def test_one_input(data: bytes) -> None:
    global _count
    route, segment, query, auth, length, body = parse(data)
    if route == b"device":
        with contextlib.suppress(ConfigError):
            parse_device(body.decode("utf-8", "replace"))
        return
    method, _, prefix = route.decode("latin-1").partition(" ")
    if method not in ("GET", "PUT", "POST", "DELETE", "PATCH"):
        return
    if method == "PUT" and segment == b"=":  # lets an upload reach the store: the path names its sha256
        segment = hashlib.sha256(body).hexdigest().encode()
    raw = b"/".join(p for p in (prefix.encode("latin-1"), segment) if p)
    raw_path = "/v1/" + quote_from_bytes(raw, safe="/")
    path = unquote(raw_path)  # as uvicorn decodes the request line
    if path.rstrip("/") == "/v1/info":
        return
    headers = [(b"host", b"127.0.0.1")]
    if auth:
        headers.append((b"authorization", f"Bearer {TOKEN}".encode() if auth == b"TOKEN" else auth))
    if length:
        headers.append((b"content-length", str(len(body)).encode() if length == b"=" else length))
    _count += 1
    root = scratch() / NAME / str(_count)
    store = ModelStore(root, cap_bytes=1 << 20, max_upload_bytes=1 << 16)
    try:
        with store.upload() as up:
            up.write(BLOB)
            up.commit(BLOB_SHA)
        app = create_app(AgentConfig(store=root, token=TOKEN), store)
        # the ASGI spec has the query string percent-encoded (a server hands nothing else over); headers are bytes
        query = quote_from_bytes(query, safe="=&").encode()
        status, reply = asyncio.run(_request(app, method, path, raw_path, query, headers, body))
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    if status >= 500 and status not in (503, 507):
        raise RuntimeError(f"the agent answered {status} to {method} {path!r}: {reply[:300]!r}")
    if status >= 400:
        json.loads(reply)["error"]["message"]


async def _request(app, method, path, raw_path, query, headers, body) -> tuple[int, bytes]:
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


if __name__ == "__main__":
    main(NAME, test_one_input, json_mutator)
