"""The management routes' part of the OpenAPI document (`http_openapi` adds it to the Dapr routes')."""

from __future__ import annotations

from typing import Any

from .management_rules import (
    BULK_LIMIT,
    CONTINUATION_TOKEN_PATTERN,
    LIST_PAGE_SIZE,
    MAX_BULK_LIMIT,
    MAX_FILTER_TEXT,
    MAX_LIST_PAGE_SIZE,
)
from .workflows import MAX_INSTANCE_ID_LENGTH, RuntimeStatus

_STATUS_NAMES = [s.name for s in RuntimeStatus]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **extra,
    }


_TEXT = {"type": "string", "maxLength": MAX_FILTER_TEXT, "pattern": "^[^\\u0000]*$"}
_TIME = {"type": "string", "format": "date-time"}

_FILTER_PROPERTIES: dict[str, Any] = {
    "status": {
        "description": "Runtime statuses; an instance in any of them matches.",
        "oneOf": [
            {"type": "string", "enum": _STATUS_NAMES},
            {"type": "array", "items": {"type": "string", "enum": _STATUS_NAMES}},
        ],
    },
    "name": {**_TEXT, "description": "The workflow name, exactly."},
    "createdFrom": {**_TIME, "description": "Created at or after this time (RFC 3339)."},
    "createdTo": {**_TIME, "description": "Created before this time (RFC 3339)."},
    "updatedFrom": {**_TIME, "description": "Last updated at or after this time (RFC 3339)."},
    "updatedTo": {**_TIME, "description": "Last updated before this time (RFC 3339)."},
    "idPrefix": {**_TEXT, "description": "Instance IDs that start with this text."},
    "customStatus": {**_TEXT, "description": "Custom statuses that contain this text."},
    "parentInstanceID": {**_TEXT, "description": "Child workflows of this instance."},
}


def _filter_parameters() -> list[dict[str, Any]]:
    params = [
        _query(
            "status",
            "Runtime statuses (repeat the parameter or separate them with commas).",
            {"type": "array", "items": {"type": "string", "enum": _STATUS_NAMES}},
            style="form",
            explode=True,
        )
    ]
    for name, schema in _FILTER_PROPERTIES.items():
        if name != "status":
            described = dict(schema)
            params.append(_query(name, described.pop("description"), described))
    return params


def _bulk_body(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "filter": {"type": "object", "additionalProperties": False, "properties": _FILTER_PROPERTIES},
            "dryRun": {"type": "boolean", "default": False, "description": "Count only; change nothing."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_BULK_LIMIT,
                "default": BULK_LIMIT,
                "description": "The most instances one request changes.",
            },
            **extra,
        },
    }


def add_management(document: dict[str, Any], component: dict[str, Any], errors: dict[str, Any]) -> None:
    """Adds the management paths and schemas; `errors` holds the document's error responses
    (`malformed`, `not_found`, `state`, `too_large`, `internal`)."""
    base = "/v1.0/workflows/{component}"
    instance = {
        "name": "instanceID",
        "in": "path",
        "required": True,
        "description": "The instance ID.",
        "schema": {"type": "string", "minLength": 1},
    }
    common = {"400": errors["malformed"], "404": errors["not_found"], "500": errors["internal"]}
    bulk = {
        **common,
        "200": _json("What matched and what was done.", "BulkResult"),
        "413": errors["too_large"],
    }
    document["paths"].update(
        {
            base: {
                "get": {
                    "operationId": "listWorkflows",
                    "summary": "List instances (or count them by status)",
                    "description": "Instances matching every filter given, a page at a time, newest "
                    "first unless `order=oldest`. With `countsOnly=true`, the number of instances of "
                    "each status instead (the filters other than `status` apply).",
                    "parameters": [
                        component,
                        *_filter_parameters(),
                        _query(
                            "pageSize",
                            f"Instances per page (default {LIST_PAGE_SIZE}).",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIST_PAGE_SIZE},
                        ),
                        _query(
                            "continuationToken",
                            "The `continuationToken` of the previous page.",
                            {"type": "string", "pattern": CONTINUATION_TOKEN_PATTERN},
                        ),
                        _query(
                            "order", "By creation time.", {"type": "string", "enum": ["newest", "oldest"]}
                        ),
                        _query("countsOnly", "Answer counts by status.", {"type": "boolean"}),
                    ],
                    "responses": {
                        **common,
                        "200": {
                            "description": "A page of instances, or the counts.",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [_ref("InstancePage"), _ref("StatusCounts")]}
                                }
                            },
                        },
                    },
                }
            },
            base + "/purge": {
                "post": {
                    "operationId": "bulkPurgeWorkflows",
                    "summary": "Purge the instances a filter matches",
                    "description": "Server-side: finished instances (all of them with `force`) that "
                    "match the filter are purged with their child workflows, up to `limit`; `more` "
                    "says that matches are left.",
                    "parameters": [component],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": _bulk_body(
                                    {
                                        "force": {
                                            "type": "boolean",
                                            "default": False,
                                            "description": "Purge instances that have not finished too.",
                                        }
                                    }
                                )
                            }
                        },
                    },
                    "responses": bulk,
                }
            },
            base + "/terminate": {
                "post": {
                    "operationId": "bulkTerminateWorkflows",
                    "summary": "Terminate the instances a filter matches",
                    "description": "Server-side: instances that have not finished and match the "
                    "filter are terminated with their child workflows, up to `limit`.",
                    "parameters": [component],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": _bulk_body({"output": {"description": "The terminated output."}})
                            }
                        },
                    },
                    "responses": bulk,
                }
            },
            base + "/{instanceID}/history": {
                "get": {
                    "operationId": "getWorkflowHistory",
                    "summary": "An instance's history",
                    "parameters": [component, instance],
                    "responses": {**common, "200": _json("The history, oldest event first.", "History")},
                }
            },
            base + "/{instanceID}/rerun": {
                "post": {
                    "operationId": "rerunWorkflow",
                    "summary": "Run a finished instance again from an event",
                    "description": "A new instance replays the history up to the event and runs its "
                    "work and everything after it again.",
                    "parameters": [component, instance],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["fromEventID"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "fromEventID": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 2**31 - 1,
                                        },
                                        "newInstanceID": {
                                            "type": "string",
                                            "pattern": "^[A-Za-z0-9_-]*$",
                                            "maxLength": MAX_INSTANCE_ID_LENGTH,
                                            "description": "Default: a random ID.",
                                        },
                                        "input": {"description": "The activity's new input."},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **common,
                        "202": _json("The rerun instance.", "Started"),
                        "409": errors["state"],
                        "413": errors["too_large"],
                    },
                }
            },
        }
    )
    instance_schema = document["components"]["schemas"]["Instance"]
    document["components"]["schemas"].update(
        {
            "ListedInstance": {
                "allOf": [
                    instance_schema,
                    {
                        "type": "object",
                        "required": ["parentInstanceID"],
                        "properties": {"parentInstanceID": {"type": "string", "nullable": True}},
                    },
                ]
            },
            "InstancePage": {
                "type": "object",
                "required": ["instances", "continuationToken"],
                "properties": {
                    "instances": {"type": "array", "items": _ref("ListedInstance")},
                    "continuationToken": {"type": "string", "nullable": True},
                },
            },
            "StatusCounts": {
                "type": "object",
                "required": ["counts"],
                "properties": {
                    "counts": {
                        "type": "object",
                        "required": _STATUS_NAMES,
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    }
                },
            },
            "History": {
                "type": "object",
                "required": ["instanceID", "events"],
                "properties": {
                    "instanceID": {"type": "string"},
                    "events": {"type": "array", "items": _ref("HistoryEvent")},
                },
            },
            "HistoryEvent": {
                "type": "object",
                "required": ["eventID", "type", "timestamp", "name", "taskScheduledID", "details"],
                "properties": {
                    "eventID": {"type": "integer"},
                    "type": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "name": {"type": "string", "nullable": True},
                    "taskScheduledID": {"type": "integer", "nullable": True},
                    "details": {"type": "object"},
                },
            },
            "BulkResult": {
                "type": "object",
                "required": ["matched", "affected", "dryRun", "more"],
                "properties": {
                    "matched": {"type": "integer", "minimum": 0},
                    "affected": {"type": "integer", "minimum": 0},
                    "dryRun": {"type": "boolean"},
                    "more": {"type": "boolean"},
                },
            },
        }
    )
