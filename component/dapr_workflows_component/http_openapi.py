"""The OpenAPI 3 document of the Workflow HTTP API, as `http_api` serves it.

Written by hand from the routes of the Dapr docs' Workflow API reference. It describes the `/v1.0`
paths; `/v1.0-beta1` and `/v1.0-alpha1` serve the same routes. The document is built for one
server's settings: the accepted component names and the body limit appear in it.
"""

from __future__ import annotations

from typing import Any

from .http_openapi_management import add_management
from .workflows import MAX_INSTANCE_ID_LENGTH, ErrorCode, RuntimeStatus

API_VERSION = "v1.0"
ALIAS_VERSIONS = ("v1.0-beta1", "v1.0-alpha1")
OPENAPI_PATH = f"/{API_VERSION}/workflows/openapi.json"

_BASE = f"/{API_VERSION}/workflows/{{component}}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_ACCEPTED = {"description": "Accepted: the change has taken effect."}
_NOT_FOUND = _error(
    "No such instance (`ERR_INSTANCE_NOT_FOUND`), or an unknown component name "
    "(`ERR_WORKFLOW_COMPONENT_NOT_FOUND`, whose message names the accepted ones)."
)
_MALFORMED = _error(
    "The request is malformed (`ERR_INVALID_REQUEST`): a body that is not JSON, a "
    "malformed instance ID, a bad query parameter."
)
_TOO_LARGE = _error(
    "The body is larger than the server accepts (`ERR_PAYLOAD_TOO_LARGE`); the message says the limit."
)
_STATE = _error(
    "The instance's state does not allow the call (`ERR_INSTANCE_STATE`), e.g. a purge "
    "of an instance that has not finished."
)
_INTERNAL = _error("The request was fine; the server failed (`ERR_INTERNAL`, see the server's log).")

_INSTANCE = {
    "name": "instanceID",
    "in": "path",
    "required": True,
    "description": "The instance ID.",
    "schema": {"type": "string", "minLength": 1},
}
_RECURSIVE = {
    "name": "recursive",
    "in": "query",
    "required": False,
    "description": "Include the child workflows the instance started (default `true`).",
    "schema": {"type": "boolean", "default": True},
}

_FORCE = {
    "name": "force",
    "in": "query",
    "required": False,
    "description": "Purge the instance even if it has not finished (default `false`).",
    "schema": {"type": "boolean", "default": False},
}


def _json_body(description: str) -> dict[str, Any]:
    return {
        "required": False,
        "description": description + " Any JSON value; an empty body or `null` means none. The "
        "`Content-Type` header is not looked at.",
        "content": {"application/json": {"schema": {}}},
    }


def openapi_document(component_names: tuple[str, ...], max_body_bytes: int) -> dict[str, Any]:
    component = {
        "name": "component",
        "in": "path",
        "required": True,
        "description": "The workflow component: `dapr`, as in the Dapr docs (`--http-component-names`).",
        "schema": {"type": "string", "enum": list(component_names)},
    }

    def params(*rest: dict[str, Any]) -> list[dict[str, Any]]:
        return [component, *rest]

    def pause_or_resume(operation_id: str, summary: str, description: str) -> dict[str, Any]:
        return {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "parameters": params(_INSTANCE),
            "responses": {"202": _ACCEPTED, "404": _NOT_FOUND, "409": _STATE, "500": _INTERNAL},
        }

    purge = {
        "summary": "Purge an instance",
        "description": "Deletes a finished instance (COMPLETED, FAILED, TERMINATED or CANCELED) and "
        "its history; afterwards its ID is free and a GET answers 404.",
        "parameters": params(_INSTANCE, _RECURSIVE, _FORCE),
        "responses": {
            "202": _ACCEPTED,
            "400": _MALFORMED,
            "404": _NOT_FOUND,
            "409": _STATE,
            "500": _INTERNAL,
        },
    }
    pause = pause_or_resume(
        "pauseWorkflow", "Pause an instance", "Suspends the instance; a GET right after says SUSPENDED."
    )
    resume = pause_or_resume(
        "resumeWorkflow",
        "Resume an instance",
        "Resumes a suspended instance; a GET right after says RUNNING. Resuming an instance that "
        "is not suspended does nothing.",
    )
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "dapr-workflows: the Dapr Workflow HTTP API",
            "version": "1.0",
            "description": "The routes, bodies and status codes of the Dapr docs' Workflow API "
            "reference, served by `dapr-workflows serve`. The same routes are served under "
            + ", ".join(f"`/{v}`" for v in ALIAS_VERSIONS)
            + f". Request bodies are limited to {max_body_bytes} bytes (413 beyond). Errors are "
            'JSON: `{"errorCode": ..., "message": ...}`.',
        },
        "paths": {
            f"{_BASE}/{{workflowName}}/start": {
                "post": {
                    "operationId": "startWorkflow",
                    "summary": "Start a workflow instance",
                    "description": "Starts an instance of the workflow `workflowName`. Returns once "
                    "a worker has begun the instance, or after a short wait (the instance is recorded "
                    "either way).",
                    "parameters": params(
                        {
                            "name": "workflowName",
                            "in": "path",
                            "required": True,
                            "description": "The workflow's registered name.",
                            "schema": {"type": "string", "minLength": 1},
                        },
                        {
                            "name": "instanceID",
                            "in": "query",
                            "required": False,
                            "description": "The new instance's ID: letters, digits, `_` and `-`; "
                            "absent or empty, a random one. An ID stays taken until its instance is "
                            "purged.",
                            "schema": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_-]*$",
                                "maxLength": MAX_INSTANCE_ID_LENGTH,
                            },
                        },
                        {
                            "name": "startTime",
                            "in": "query",
                            "required": False,
                            "description": "Start the instance at this time (RFC 3339) instead of now; "
                            "the call then answers without waiting for a worker.",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                    ),
                    "requestBody": _json_body("The workflow's input."),
                    "responses": {
                        "202": {
                            "description": "Started.",
                            "headers": {
                                "Location": {
                                    "description": "The URL of the new instance (its GET).",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Started"}}
                            },
                            "links": {
                                name: {
                                    "operationId": name,
                                    "parameters": {
                                        "component": "$request.path.component",
                                        "instanceID": "$response.body#/instanceID",
                                    },
                                }
                                for name in (
                                    "getWorkflow",
                                    "terminateWorkflow",
                                    "pauseWorkflow",
                                    "resumeWorkflow",
                                    "purgeWorkflow",
                                    "deleteWorkflow",
                                    "getWorkflowHistory",
                                )
                            },
                        },
                        "400": _MALFORMED,
                        "404": _error("An unknown component name (`ERR_WORKFLOW_COMPONENT_NOT_FOUND`)."),
                        "409": _error("The instance ID is in use (`ERR_INSTANCE_EXISTS`)."),
                        "413": _TOO_LARGE,
                        "500": _INTERNAL,
                    },
                }
            },
            f"{_BASE}/{{instanceID}}": {
                "get": {
                    "operationId": "getWorkflow",
                    "summary": "Get an instance",
                    "parameters": params(_INSTANCE),
                    "responses": {
                        "200": {
                            "description": "The instance.",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Instance"}}
                            },
                        },
                        "404": _NOT_FOUND,
                        "500": _INTERNAL,
                    },
                },
                "delete": {**purge, "operationId": "deleteWorkflow", "summary": "Purge an instance (alias)"},
            },
            f"{_BASE}/{{instanceID}}/terminate": {
                "post": {
                    "operationId": "terminateWorkflow",
                    "summary": "Terminate an instance",
                    "description": "Terminates the instance (and, unless `recursive=false`, the child "
                    "workflows it started); a GET right after says TERMINATED. Terminating a finished "
                    "instance does nothing.",
                    "parameters": params(_INSTANCE, _RECURSIVE),
                    "requestBody": _json_body("The output the terminated instance reports."),
                    "responses": {
                        "202": _ACCEPTED,
                        "400": _MALFORMED,
                        "404": _NOT_FOUND,
                        "413": _TOO_LARGE,
                        "500": _INTERNAL,
                    },
                }
            },
            f"{_BASE}/{{instanceID}}/raiseEvent/{{eventName}}": {
                "post": {
                    "operationId": "raiseEventWorkflow",
                    "summary": "Raise an event to an instance",
                    "parameters": params(
                        _INSTANCE,
                        {
                            "name": "eventName",
                            "in": "path",
                            "required": True,
                            "description": "The event's name, as the workflow waits for it.",
                            "schema": {"type": "string", "minLength": 1},
                        },
                    ),
                    "requestBody": _json_body("The event's data."),
                    "responses": {
                        "202": _ACCEPTED,
                        "400": _MALFORMED,
                        "404": _NOT_FOUND,
                        "409": _error("The instance has finished (`ERR_INSTANCE_STATE`)."),
                        "413": _TOO_LARGE,
                        "500": _INTERNAL,
                    },
                }
            },
            f"{_BASE}/{{instanceID}}/pause": {"post": pause},
            f"{_BASE}/{{instanceID}}/resume": {"post": resume},
            f"{_BASE}/{{instanceID}}/purge": {"post": {**purge, "operationId": "purgeWorkflow"}},
            OPENAPI_PATH: {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {}}}}
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Started": {
                    "type": "object",
                    "required": ["instanceID"],
                    "properties": {"instanceID": {"type": "string"}},
                },
                "Instance": {
                    "type": "object",
                    "required": [
                        "instanceID",
                        "workflowName",
                        "createdAt",
                        "lastUpdatedAt",
                        "runtimeStatus",
                        "properties",
                    ],
                    "properties": {
                        "instanceID": {"type": "string"},
                        "workflowName": {"type": "string"},
                        "createdAt": {"type": "string", "format": "date-time"},
                        "lastUpdatedAt": {"type": "string", "format": "date-time"},
                        "runtimeStatus": {"type": "string", "enum": [s.name for s in RuntimeStatus]},
                        "properties": {
                            "type": "object",
                            "description": "`dapr.workflow.input`, `dapr.workflow.output`, "
                            "`dapr.workflow.custom_status` (each JSON text) and, for a failed instance, "
                            "`dapr.workflow.failure.error_type`, `.error_message`, `.stack_trace`.",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["errorCode", "message"],
                    "properties": {
                        "errorCode": {"type": "string", "enum": [c.api_code for c in ErrorCode]},
                        "message": {"type": "string"},
                    },
                },
            }
        },
    }
    errors = {"malformed": _MALFORMED, "not_found": _NOT_FOUND, "state": _STATE, "too_large": _TOO_LARGE}
    add_management(document, component, {**errors, "internal": _INTERNAL})
    return document
