"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand from the handlers in api.py; tests/console/test_console_api.py checks
that its paths are exactly the routes the server has, and validates real answers of each
operation against the schemas here (OpenAPI 3.1 schemas are JSON Schema 2020-12).
"""

from __future__ import annotations

from typing import Any

from servers.store.console import JSON_SCAN_ROWS, SCAN_ROWS

__all__ = ["document", "ERROR_CODES"]

#: The stable error codes (``error.code``), with their HTTP status.
ERROR_CODES = {
    "bad_request": 400,
    "invalid_json": 400,
    "invalid_parameter": 400,
    "bad_cursor": 400,
    "nothing_to_change": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "csrf_refused": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "unknown_host": 421,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "busy": 429,
    "login_limited": 429,
    "internal": 500,
    "store_unavailable": 503,
    "unavailable": 503,
}

_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_MS_OR_NULL = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
    }


def _items(schema: str) -> dict[str, Any]:
    return _object({"items": {"type": "array", "items": _ref(schema)}})


def _page(schema: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref(schema)},
            "next_cursor": {"type": ["string", "null"]},
        }
    )


_ENDPOINT = {
    "endpoint_id": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
    "application": _STR,
    "status": {"enum": ["active", "revoked"]},
    "registration_status": _STR,
    "first_seen_ms": _INT,
    "last_seen_ms": _INT,
    "last_request_ms": _INT,
    "revoked_ms": _MS_OR_NULL,
    "profile_sha256": _STR,
}
_APP = {
    "token": _STR,
    "name": _STR,
    "config_version": _INT,
    "topics": {"type": "array", "items": _object({"id": _INT, "name": _STR})},
    "balancing": _STR,
    "cached_signature": _BOOL,
    "created_ms": _INT,
}
_SDK_TOKEN = {
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "application": _STR,
    "created_ms": _INT,
    "revoked_ms": _MS_OR_NULL,
}
_NODE = {
    "node_id": _STR,
    "host": _STR,
    "port": _INT,
    "priority": _INT,
    "weight": _INT,
    "load": _INT,
    "live": _BOOL,
    "lease_left_ms": _INT,
    "access_point_id": _INT,
    "kex_public_key": _STR,
    "started_ms": _INT,
    "renewed_ms": _INT,
}

#: What an application may be given (actions.checked_config_version, checked_topics: the
#: ids are distinct too). No string anywhere may hold a NUL (actions.checked_text).
_VERSION = {"type": "integer", "minimum": 1, "maximum": 2**32 - 1}
_TOPICS = {
    "type": "array",
    "items": _object({"id": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                      "name": {"type": "string", "minLength": 1}}),
}

SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": _object({"code": {"enum": sorted(ERROR_CODES)}, "message": _STR},
                          {"field": _STR})}
    ),
    "Me": _object({"name": _STR, "role": {"enum": ["admin", "read-only"]}, "via": _STR},
                  {"csrf_token": _STR}),
    "Application": _object(_APP, {"config": _STR, "config_hex": _STR, "sdk_tokens": _INT}),
    "ApplicationList": _items("Application"),
    "ApplicationCreate": _object(
        {"name": _STR},
        {"config": _STR, "config_version": _VERSION, "topics": _TOPICS,
         "balancing": _STR, "cached_signature": _BOOL},
    ),
    "ApplicationUpdate": _object(
        {},
        {"name": _STR, "config": _STR, "config_version": _VERSION, "topics": _TOPICS,
         "balancing": _STR, "cached_signature": _BOOL},
    ),
    "SdkToken": _object(_SDK_TOKEN),
    "SdkTokenList": _items("SdkToken"),
    "NewSdkToken": _object({**_SDK_TOKEN, "sdk_token": _STR}),
    "SdkExport": _object(
        {"sdk_token": _STR},
        {"format": {"enum": ["json", "header"]},
         "bootstrap_servers": {"type": "array", "items": {"type": "string"}}},
    ),
    "Endpoint": _object(_ENDPOINT),
    "EndpointDetail": _object({**_ENDPOINT, "public_key_der_hex": _STR, "profile": _STR}),
    "EndpointPage": _object(
        {
            "items": {"type": "array", "items": _ref("Endpoint")},
            "next_cursor": {"type": ["string", "null"]},
            # null: indexed filters only. Else how far a bounded search got (see the
            # description of GET /api/v1/endpoints).
            "scan": {"oneOf": [
                {"type": "null"},
                _object({"examined": {"type": "integer", "minimum": 0},
                         "window": {"type": "integer", "minimum": 1}}),
            ]},
        }
    ),
    "Reason": _object({}, {"reason": _STR}),
    "AuditEntry": _object(
        {"seq": _INT, "at_ms": _INT, "actor": _STR, "action": _STR, "subject": _STR,
         "detail": _STR}
    ),
    "AuditPage": _page("AuditEntry"),
    "Node": _object(_NODE, {"lease_age_ms": _INT}),
    "NodeList": _items("Node"),
    "Dashboard": _object(
        {
            "at_ms": _INT,
            "registrations": {"type": "object", "additionalProperties": {"type": "number"}},
            "registrations_total": {"type": "number"},
            "refusals": {"type": "object", "additionalProperties": {"type": "number"}},
            "refusals_total": {"type": "number"},
            "resolutions_total": {"type": "number"},
            "connections_open": {"type": "object"},
            "registrations_per_s": {"type": "number"},
            "refusals_per_s": {"type": "number"},
            "history": {"type": "array", "items": _object(
                {"at_ms": _INT, "registrations_per_s": {"type": "number"},
                 "refusals_per_s": {"type": "number"}})},
            "nodes": {"type": "array", "items": _ref("Node")},
        }
    ),
    "Keyring": _object(
        {"generation": _INT, "signature_algorithm": _STR, "key_sha256": _STR,
         "chain": {"type": ["string", "null"]}, "pending_rotation": {}}
    ),
    "Credential": _object(
        {"name": _STR, "kind": {"enum": ["password", "api-key"]},
         "role": {"enum": ["admin", "read-only"]}, "created_ms": _INT,
         "revoked_ms": _MS_OR_NULL}
    ),
    "CredentialList": _items("Credential"),
}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "refused (error.code says why)", **_json("Error")}
        for s in (401, 503, *statuses)
    }


def _op(
    summary: str,
    ok: tuple[int, str | None],
    *errors: int,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    changes: bool = False,
) -> dict[str, Any]:
    status, schema = ok
    answer: dict[str, Any] = {"description": "done"}
    if schema is not None:
        answer.update(_json(schema))
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(status): answer, **_errors(*errors, *((403,) if changes else ()))},
    }
    if body is not None:
        op["requestBody"] = {"required": body != "Reason", **_json(body)}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR,
            "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_FIELD_PATH = r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$"
_ENDPOINT_SEARCH = (
    "id_prefix, application and status are served by indexes: a page holds `limit` rows "
    "unless none are left. since_ms, profile and profile_field are tested on each row the "
    "indexed filters leave, and a page examines at most `scan_rows` such rows, newest "
    "first from its cursor: it may hold fewer than `limit` rows, or none, and still have a "
    "next_cursor. Its `scan` says how many rows the search has examined so far (all "
    "pages) and the window of each page; next_cursor null means the search is complete."
)
_TOKEN = _path_param("token", "application token")
_ID = _path_param("id", "endpoint id, 40 hex digits")
_CURSOR = _query("cursor", _STR, "next_cursor of the previous page")
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size")


def document() -> dict[str, Any]:
    export_answer = {
        "description": "sdk.json (or sdk.h with format=header), as an attachment",
        "content": {"application/json": {"schema": {"type": "object"}},
                    "text/x-c": {"schema": _STR}},
    }
    export = _op("the SDK configuration for one SDK token (a POST: the token stays out of URLs)",
                 (200, None), 400, 404, 415, body="SdkExport", params=[_TOKEN])
    export["responses"]["200"] = export_answer
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kaa-wire admin API",
            "version": "1",
            "description": "Authenticate with 'Authorization: Bearer KEY' (python -m "
            "servers.control admin key NAME --role ROLE) or a console session. Lists are "
            "newest first and page with next_cursor. Errors: {error: {code, message}}.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "kaa_session"},
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
        "paths": {
            "/api/v1/openapi.json": {"get": _op("this document", (200, None))},
            "/api/v1/me": {"get": _op("who is asking", (200, "Me"))},
            "/api/v1/dashboard": {
                "get": _op("figures from /metrics, their rates and chart, and the nodes",
                           (200, "Dashboard"))
            },
            "/api/v1/apps": {
                "get": _op("applications", (200, "ApplicationList")),
                "post": _op("create an application", (201, "Application"), 400, 415,
                            body="ApplicationCreate", changes=True),
            },
            "/api/v1/apps/{token}": {
                "get": _op("one application", (200, "Application"), 400, 404, params=[_TOKEN]),
                "patch": _op("change an application", (200, "Application"), 400, 404, 415,
                             body="ApplicationUpdate", params=[_TOKEN], changes=True),
            },
            "/api/v1/apps/{token}/sdk-tokens": {
                "get": _op("an application's SDK tokens, by SHA-256", (200, "SdkTokenList"),
                           400, 404, params=[_TOKEN]),
                "post": _op("a new SDK token: the only answer that holds it", (201, "NewSdkToken"),
                            400, 404, params=[_TOKEN], changes=True),
            },
            "/api/v1/apps/{token}/sdk-tokens/{sha256}/revoke": {
                "post": _op("refuse an SDK token from now on", (200, "SdkToken"), 400, 404,
                            params=[_TOKEN, _path_param("sha256", "the token's SHA-256")],
                            changes=True),
            },
            "/api/v1/apps/{token}/sdk-export": {"post": export},
            "/api/v1/endpoints": {
                "get": {**_op(
                    "search endpoints, newest first", (200, "EndpointPage"), 400,
                    params=[
                        _query("id_prefix", {"type": "string", "pattern": "^[0-9a-fA-F]{0,40}$"},
                               "hex digits the id starts with"),
                        _query("application", _STR, "application token"),
                        _query("status", {"enum": ["active", "revoked"]}, "status"),
                        _query("since_ms", {"type": "integer", "minimum": 0},
                               "first seen at or after (epoch ms); examined, not indexed"),
                        _query("profile", {"type": "string", "maxLength": 200},
                               "bytes the profile contains; examined, not indexed"),
                        _query("profile_field", {"type": "string", "pattern": _FIELD_PATH},
                               "a field of the profile parsed as JSON: object keys from the "
                               "top joined by '.' (with profile_value)"),
                        _query("profile_value", {"type": "string", "maxLength": 200},
                               'the JSON value that field must equal: "text", a number, '
                               "true, false or null (with profile_field)"),
                        _query("scan_rows", {"type": "integer", "minimum": 1,
                                             "maximum": SCAN_ROWS},
                               "examine at most this many rows per page (default and "
                               f"most: {SCAN_ROWS:,}, {JSON_SCAN_ROWS:,} with profile_field)"),
                        _CURSOR, _LIMIT,
                    ],
                ), "description": _ENDPOINT_SEARCH},
            },
            "/api/v1/endpoints/{id}": {
                "get": _op("one endpoint with its profile and key", (200, "EndpointDetail"),
                           400, 404, params=[_ID])
            },
            "/api/v1/endpoints/{id}/revoke": {
                "post": _op("revoke: its next registration is refused", (200, "Endpoint"), 400,
                            404, body="Reason", params=[_ID], changes=True)
            },
            "/api/v1/endpoints/{id}/reinstate": {
                "post": _op("undo a revocation", (200, "Endpoint"), 400, 404, body="Reason",
                            params=[_ID], changes=True)
            },
            "/api/v1/nodes": {"get": _op("Operations node leases", (200, "NodeList"))},
            "/api/v1/audit": {
                "get": _op("the audit log, newest first", (200, "AuditPage"), 400,
                           params=[_query("subject", _STR, "only this subject"), _CURSOR,
                                   _LIMIT])
            },
            "/api/v1/bootstrap": {"get": _op("the Bootstrap key", (200, "Keyring"))},
            "/api/v1/credentials": {
                "get": _op("admin credentials (never their secrets)", (200, "CredentialList"))
            },
        },
    }
