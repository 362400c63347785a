"""What stands between the network and the studio: a bound on every request body, and a login
that slows down a client guessing passwords. Both are plain ASGI middleware around the whole
server (the /v1beta API and Gradio's own routes alike), so no route can be reached around them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from training.core.limits import DEFAULT_LIMITS

API_PREFIX = "/v1beta"

MAX_REQUEST_BYTES = DEFAULT_LIMITS.max_file_bytes + 12 * 1024 * 1024
"""Largest request body, in bytes: the 20 MB upload limit plus room for a form's or JSON's own
bytes (escapes, field names). Refused while it is read, so a bigger body never sits in memory."""


def _google_error(status: int, rpc_status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": status, "message": message, "status": rpc_status}}).encode()


async def _send_error(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse a request whose body is over ``max_bytes``: at once when its Content-Length says
    so, else as soon as the bytes read pass the limit (the rest is not read, the handler sees the
    client gone). /v1beta answers in Google's shape (400 INVALID_ARGUMENT, as Google does for an
    oversized payload); the UI's routes get 413."""

    def __init__(self, app, max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, scope) -> tuple[int, bytes]:
        limit_mb = self.max_bytes / (1024 * 1024)
        message = (f"Request payload size exceeds the limit: {self.max_bytes} bytes "
                   f"({limit_mb:.0f} MB). Send fewer or shorter examples per request.")
        if scope.get("path", "").startswith(API_PREFIX):
            return 400, _google_error(400, "INVALID_ARGUMENT", message)
        return 413, json.dumps({"detail": message}).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, *self._refusal(scope))
            return
        received = 0
        refused = False
        started = False

        async def bounded_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await _send_error(send, *self._refusal(scope))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the refusal was sent; what the handler makes of a lost client is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)


@dataclass
class LoginThrottle:
    """Failed logins per client address: after ``free_failures`` in a row, each next attempt
    waits ``base_delay_s`` doubled per further failure (at most ``max_delay_s``). A success
    clears the client's record; records older than ``forget_after_s`` are dropped."""

    free_failures: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0
    forget_after_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt (0 when it may try)."""
        with self._lock:
            count, last = self._failures.get(client, (0, 0.0))
            if count < self.free_failures:
                return 0.0
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (count - self.free_failures))
            return max(0.0, last + delay - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            self._failures = {k: v for k, v in self._failures.items()
                              if now - v[1] < self.forget_after_s}
            count, _ = self._failures.get(client, (0, 0.0))
            self._failures[client] = (count + 1, now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class LoginThrottleMiddleware:
    """Applies a ``LoginThrottle`` to Gradio's ``POST /login``: a client that must wait gets 429
    with Retry-After and a message saying how long, before its password is even checked."""

    def __init__(self, app, throttle: LoginThrottle | None = None):
        self.app = app
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path", "").rstrip("/") != "/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait_s = self.throttle.wait_s(client)
        if wait_s > 0:
            seconds = math.ceil(wait_s)
            body = json.dumps({"detail": f"Too many wrong logins from this address: wait "
                                         f"{seconds} s before trying again."}).encode()
            await _send_error(send, 429, body, [(b"retry-after", str(seconds).encode())])
            return
        status: list[int] = []

        async def watch(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] < 300:
            self.throttle.succeeded(client)
        elif status and status[0] in (400, 401, 403):
            self.throttle.failed(client)
