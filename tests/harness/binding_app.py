"""A tiny HTTP app that takes input-binding events from daprd and records every delivery.

It runs in a thread of the test process (stdlib `http.server`) on a free port that it keeps across
`stop()`/`start()`, so daprd finds it again. It answers `OPTIONS /<route>` with 200 for its routes
(daprd's check that the app subscribes to a binding; `options_routes` narrows that), and each
`POST /<route>` with 200, or with 500 for the first delivery of each event of the instances in
`fail_first`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.engine_process import free_port


@dataclass
class Delivery:
    route: str
    body: Any  # the JSON document daprd posted
    headers: dict[str, str]
    status: int  # what the app answered
    at: float  # time.monotonic() of the delivery


class RecordingApp:
    def __init__(
        self, routes: Iterable[str] = ("workflows",), options_routes: Iterable[str] | None = None
    ) -> None:
        self.routes = set(routes)
        # The routes whose OPTIONS the app answers with 200 (default: all); others get 404.
        self.options_routes = self.routes if options_routes is None else set(options_routes)
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.options_paths: list[str] = []
        self.fail_first: set[str] = set()  # instance IDs
        self._failed: set[tuple[str, str]] = set()  # (instance ID, event type) answered 500 once
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- server

    def start(self) -> RecordingApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so a stopped app leaves no open connection.
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:
                route = self.path.strip("/")
                with app._cond:
                    app.options_paths.append(self.path)
                self.send_response(200 if route in app.options_routes else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                route = self.path.strip("/")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                status = 200 if route in app.routes else 404
                with app._cond:
                    if status == 200 and isinstance(body, dict):
                        key = (str(body.get("instanceID")), str(body.get("type")))
                        if key[0] in app.fail_first and key not in app._failed:
                            app._failed.add(key)
                            status = 500
                    app.deliveries.append(
                        Delivery(route, body, dict(self.headers.items()), status, time.monotonic())
                    )
                    app._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops listening: daprd's deliveries fail with connection refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- what arrived

    def received(self, instance_id: str | None = None) -> list[Delivery]:
        """Deliveries answered 200 (of `instance_id`'s events, when given)."""
        with self._cond:
            return [
                d
                for d in self.deliveries
                if d.status == 200 and (instance_id is None or _instance(d) == instance_id)
            ]

    def attempts(self, instance_id: str, event_type: str) -> list[Delivery]:
        """Every delivery of one event, whatever the app answered."""
        with self._cond:
            mine = [d for d in self.deliveries if _instance(d) == instance_id]
            return [d for d in mine if d.body["type"] == event_type]

    def wait_for(self, check: Callable[[RecordingApp], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [d.body for d in self.deliveries]
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {got}")
                self._cond.wait(min(left, 0.2))

    def wait_events(
        self, instance_id: str, types: Iterable[str], timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        """Waits until events of all `types` of the instance arrived; returns the first of each type."""
        wanted = set(types)

        def have() -> set[str]:
            return {d.body["type"] for d in self.received(instance_id)}

        self.wait_for(lambda _: wanted <= have(), timeout, f"events {sorted(wanted)} of {instance_id!r}")
        events: dict[str, dict[str, Any]] = {}
        for d in self.received(instance_id):
            events.setdefault(d.body["type"], d.body)
        return events


def _instance(delivery: Delivery) -> str | None:
    return delivery.body.get("instanceID") if isinstance(delivery.body, dict) else None
