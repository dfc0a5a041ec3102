"""A client of the management HTTP API and the Dapr routes, for tests (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.harness.shared import wait_until

BASE = "/v1.0/workflows/dapr"


class Http:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(
        self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None
    ) -> tuple[int, Any]:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read()
                status = response.status
        except urllib.error.HTTPError as err:
            text, status = err.read(), err.code
        return status, json.loads(text) if text.strip() else None

    def ok(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
        status, answer = self.call(method, path, body, query)
        assert status in (200, 202), (status, answer)
        return answer

    def start(self, workflow: str, instance_id: str, input: Any = None) -> str:
        path = f"{BASE}/{workflow}/start"
        answer = self.ok("POST", path, input if input is not None else {}, [("instanceID", instance_id)])
        return str(answer["instanceID"])

    def get(self, instance_id: str) -> dict[str, Any] | None:
        status, answer = self.call("GET", f"{BASE}/{instance_id}")
        return None if status == 404 else answer

    def wait_status(self, instance_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(
            lambda: self.get(instance_id), lambda s: s is not None and s["runtimeStatus"] == status, timeout
        )
        return found

    def listing(self, *query: tuple[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = self.ok("GET", BASE, query=list(query))
        return answer

    def ids(self, *query: tuple[str, str]) -> list[str]:
        return [i["instanceID"] for i in self.listing(*query)["instances"]]
