"""The management routes of the HTTP API, beside the Dapr routes: a filtered, paged listing of
instances (or their counts by status), an instance's history, rerun from an event, and bulk purge
and terminate by filter.

A thin adapter like the rest of `http_api`: the filters, limits and bodies are checked by
`management_rules.py`, the work is done by the engine (`engine.bulk` for the listing and the bulk actions).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format

from .engine import bulk_purge, bulk_terminate, counts, list_page, rewound_details
from .management_rules import (
    FILTER_FIELDS,
    bulk_request,
    instance_filter,
    list_order,
    list_page_size,
    management_json,
    query_flag,
    rerun_request,
)
from .protos import dapr_dialect_pb2 as pb
from .workflows import ErrorCode, WorkflowError, timestamp_rfc3339

if TYPE_CHECKING:
    from .http_api import HttpApi

_LIST_PARAMETERS = (*FILTER_FIELDS, "pageSize", "continuationToken", "order", "countsOnly")

# Events that answer an earlier one, and the field that names it.
_ANSWER_FIELDS = {
    "taskCompleted": "taskScheduledId",
    "taskFailed": "taskScheduledId",
    "childWorkflowInstanceCompleted": "taskScheduledId",
    "childWorkflowInstanceFailed": "taskScheduledId",
    "timerFired": "timerId",
}


def history_json(events: list[bytes]) -> list[dict[str, Any]]:
    """An instance's history events, oldest first, as the management API shows them."""
    out: list[dict[str, Any]] = []
    for raw in events:
        event = pb.HistoryEvent.FromString(raw)
        kind = event.WhichOneof("eventType")
        body = getattr(event, kind) if kind else None
        name = getattr(body, "name", None)
        answered = _ANSWER_FIELDS.get(kind or "")
        rewound = rewound_details(raw) if kind is None else None
        micros = event.timestamp.seconds * 1_000_000 + event.timestamp.nanos // 1000
        out.append(
            {
                "eventID": event.eventId,
                "type": kind or ("executionRewound" if rewound is not None else "unknown"),
                "timestamp": timestamp_rfc3339(micros),
                "name": name if isinstance(name, str) and name else None,
                "taskScheduledID": getattr(body, answered) if answered else None,
                "details": json_format.MessageToDict(body) if body is not None else rewound or {},
            }
        )
    return out


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ManagementRoutes:
    def __init__(self, api: HttpApi) -> None:
        self.api = api
        self.engine = api.engine

    def register(self, router: web.UrlDispatcher, base: str) -> None:
        """Adds the routes under `base` (`/{version}/workflows/{component}`)."""
        router.add_get(base, self._list)
        router.add_post(base + "/purge", self._bulk_purge)
        router.add_post(base + "/terminate", self._bulk_terminate)
        router.add_get(base + "/{instanceID}/history", self._history)
        router.add_post(base + "/{instanceID}/rerun", self._rerun)

    @staticmethod
    def _list_parameters(request: web.Request) -> dict[str, Any]:
        """The query's parameters; `status` may repeat, the others are given once."""
        fields: dict[str, Any] = {}
        for key in request.query:
            if key in fields:
                continue
            if key not in _LIST_PARAMETERS:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"unknown query parameter {key!r}; parameters: {', '.join(_LIST_PARAMETERS)}",
                )
            values = request.query.getall(key)
            if key != "status" and len(values) > 1:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT, f"the query parameter {key!r} is given {len(values)} times"
                )
            fields[key] = values if key == "status" else values[0]
        return fields

    async def _json_body(self, request: web.Request, empty: Any) -> Any:
        raw = await self.api._body(request)
        if not raw.strip():
            return empty
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):  # nested too deep: also not accepted
            raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "the request body is not valid JSON") from None

    async def _list(self, request: web.Request) -> web.Response:
        self.api._component(request)
        params = self._list_parameters(request)
        size = list_page_size(params.pop("pageSize", None))
        order = list_order(params.pop("order", None))
        token = params.pop("continuationToken", None)
        counts_only = query_flag("countsOnly", params.pop("countsOnly", None))
        query = instance_filter(params)
        if counts_only:
            return web.json_response({"counts": await counts(self.engine, query)})
        found, following = await list_page(self.engine, query, size, order, token)
        return web.json_response(
            {"instances": [management_json(i) for i in found], "continuationToken": following}
        )

    async def _history(self, request: web.Request) -> web.Response:
        instance_id = self.api._instance_id(request)
        events = await self.engine.history(instance_id)
        return web.json_response({"instanceID": instance_id, "events": history_json(events)})

    async def _rerun(self, request: web.Request) -> web.Response:
        instance_id = self.api._instance_id(request)
        event_id, new_id, new_input, replace_input = rerun_request(await self._json_body(request, None))
        rerun_id = await self.engine.rerun_from_event(instance_id, event_id, new_id, new_input, replace_input)
        return web.json_response({"instanceID": rerun_id}, status=202)

    async def _bulk_purge(self, request: web.Request) -> web.Response:
        self.api._component(request)
        query, dry_run, limit, others = bulk_request(await self._json_body(request, {}), "purge")
        result = await bulk_purge(self.engine, query, dry_run, limit, force=others.get("force", False))
        return web.json_response(result.to_json())

    async def _bulk_terminate(self, request: web.Request) -> web.Response:
        self.api._component(request)
        query, dry_run, limit, others = bulk_request(await self._json_body(request, {}), "terminate")
        output = _json_text(others["output"]) if others.get("output") is not None else None
        result = await bulk_terminate(self.engine, query, dry_run, limit, output)
        return web.json_response(result.to_json())
