"""The OpenAPI 3.1 document at /openapi.json, built from the routes the app really serves.

Table routes (:mod:`routes`: connect, the app API, admin, this one) are documented from
the same values that registered them, with JSON schemas from their pydantic models and
contracts. Routes registered outside the table — the runtime's /healthz /readyz
/metrics and the provider webhooks of :mod:`webhooks` — are described in
:data:`STATIC` and listed only when the router has them; a test walks the router and
fails on any route this document does not describe.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from webhook_gateway._api_models import ErrorBody
from webhook_gateway.context import Gateway
from webhook_gateway.routes import ROUTE_TABLE, Call, Reply, Route, register

REF = "#/components/schemas/{model}"
Operation = dict[str, Any]

_ERROR_REF = {"$ref": REF.format(model="ErrorBody")}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _plain(description: str, content_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {content_type: {"schema": {"type": "object"}}}}


# -- routes outside the table ----------------------------------------------------------------

_PROVIDER_WEBHOOK = "Verified, then stored in JetStream (`webhook.received.*`) before 2xx."
_WEBHOOK_ACCEPTED = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["accepted", "duplicate", "ignored"]},
        "event_id": {"type": "string"},
    },
}


def _webhook_responses(**refusals: str) -> dict[str, Any]:
    """2xx only once stored; every refusal is our error body (webhooks.py's statuses)."""
    responses: dict[str, Any] = {
        "200": {
            "description": "Stored, already stored (duplicate), or nothing to do (ignored)",
            "content": {"application/json": {"schema": _WEBHOOK_ACCEPTED}},
        },
        "405": _error("Another method (`method`)"),
        "413": _error("Body too large (`too_large`)"),
        "415": _error("Not application/json (`content_type`)"),
        "503": _error("The bus is unavailable (`bus_unavailable`): the provider retries"),
    }
    responses.update({status: _error(text) for status, text in refusals.items()})
    return dict(sorted(responses.items()))


STATIC: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): {
        "operationId": "healthz",
        "tags": ["ops"],
        "summary": "Liveness: the process is up",
        "responses": {"200": _plain("Alive")},
    },
    ("GET", "/readyz"): {
        "operationId": "readyz",
        "tags": ["ops"],
        "summary": "Readiness: NATS reachable right now",
        "responses": {"200": _plain("Ready"), "503": _plain("A dependency is unreachable")},
    },
    ("GET", "/metrics"): {
        "operationId": "metrics",
        "tags": ["ops"],
        "summary": "Prometheus metrics",
        "responses": {
            "200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
    ("GET", "/webhooks/strava"): {
        "operationId": "strava_webhook_validation",
        "tags": ["webhooks"],
        "summary": "Strava subscription validation (hub.challenge echo)",
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("hub.mode", "hub.verify_token", "hub.challenge")
        ],
        "responses": {
            "200": _plain('`{"hub.challenge": ...}` when the verify token matches'),
            "403": _error("Wrong verify token"),
            "400": _error("Not a validation request"),
        },
    },
    ("POST", "/webhooks/strava"): {
        "operationId": "strava_webhook_event",
        "tags": ["webhooks"],
        "summary": "Strava push event",
        "description": _PROVIDER_WEBHOOK,
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": _webhook_responses(
            **{"400": "Not a Strava event", "403": "Not our subscription (`unknown_subscription`)"}
        ),
    },
    ("POST", "/webhooks/whoop"): {
        "operationId": "whoop_webhook",
        "tags": ["webhooks"],
        "summary": "WHOOP webhook (HMAC-SHA256 signed)",
        "description": _PROVIDER_WEBHOOK,
        "parameters": [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
            for name in ("X-WHOOP-Signature", "X-WHOOP-Signature-Timestamp")
        ],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": _webhook_responses(
            **{"400": "Not a WHOOP event", "401": "Bad signature or stale timestamp"}
        ),
    },
    ("POST", "/webhooks/google/calendar"): {
        "operationId": "google_calendar_push",
        "tags": ["webhooks"],
        "summary": "Google Calendar push notification (headers only)",
        "description": _PROVIDER_WEBHOOK,
        "parameters": [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
            for name in (
                "X-Goog-Channel-ID",
                "X-Goog-Channel-Token",
                "X-Goog-Resource-ID",
                "X-Goog-Resource-State",
                "X-Goog-Message-Number",
            )
        ],
        "responses": _webhook_responses(
            **{
                "400": "Missing channel headers",
                "401": "Wrong channel token (`signature`)",
                "403": "Unknown or expired channel",
            }
        ),
    },
}


def served(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the router serves; ``*`` for a route that
    takes any method and answers 405 itself (the webhooks). HEAD twins of GETs are left
    out: aiohttp adds them."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


# -- schemas -----------------------------------------------------------------------------------


class _Schemas:
    """Component schemas collected while operations are built."""

    def __init__(self) -> None:
        self.models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        self.defs: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        self.models[(model, mode)] = None
        return {"$ref": (model, mode)}  # resolved in finish()

    def params(self, model: type[BaseModel], where: str) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        self.defs.update(schema.get("$defs", {}))
        required = set(schema.get("required", ()))
        params = []
        for name, prop in schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", None)
            prop.pop("title", None)
            param: dict[str, Any] = {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "schema": prop,
            }
            if description:
                param["description"] = description
            params.append(param)
        return params

    def finish(self, paths: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(component schemas, paths with every model reference resolved)."""
        keys, top = models_json_schema(list(self.models), ref_template=REF)
        schemas = {**self.defs, **top.get("$defs", {})}

        def resolve(node: Any) -> Any:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, tuple):
                    return copy.deepcopy(keys[ref])
                return {k: resolve(v) for k, v in node.items()}
            if isinstance(node, list):
                return [resolve(v) for v in node]
            return node

        resolved: dict[str, Any] = resolve(paths)
        return dict(sorted(schemas.items())), resolved


def _content(schemas: _Schemas, reply: Reply) -> dict[str, Any]:
    if reply.model is None:
        schema: dict[str, Any] = {"type": "string"}
    else:
        schema = schemas.ref(reply.model, "serialization")
    return {reply.content_type: {"schema": schema}}


def _operation(route: Route, schemas: _Schemas) -> Operation:
    op: Operation = {
        "operationId": route.operation_id,
        "tags": [route.tag],
        "summary": route.summary,
    }
    if route.description:
        op["description"] = route.description
    params: list[dict[str, Any]] = []
    if route.path_model is not None:
        params += schemas.params(route.path_model, "path")
    if route.query_model is not None:
        params += schemas.params(route.query_model, "query")
    if params:
        op["parameters"] = params
    if route.body_model is not None:
        body = schemas.ref(route.body_model, "validation")
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    responses: dict[str, Any] = {}
    for reply in route.replies:
        entry: dict[str, Any] = {"description": reply.description}
        if reply.status != 302:
            entry["content"] = _content(schemas, reply)
        if reply.headers:
            entry["headers"] = {
                name: {"schema": {"type": "string"}, "description": text}
                for name, text in reply.headers.items()
            }
        responses[str(reply.status)] = entry
    if route.query_model is not None or route.body_model is not None:
        responses.setdefault("400", _error("Invalid query or body (`bad_request`)"))
    if route.access != "public":
        responses["401"] = _error("Missing, invalid or expired token (`unauthorized`)")
        responses["403"] = _error(
            "The admin scope is needed" if route.access == "admin" else "Another user's data"
        )
        op["security"] = [{"bearer": []}] + ([{"access_token": []}] if route.token_in_query else [])
    else:
        op["security"] = []
    if route.path_model is not None:
        responses.setdefault("404", _error("No such resource (`not_found`, `not_connected`)"))
    if route.subject or route.access != "public":
        # Routes that touch NATS answer 503 while the bus or the owner is away.
        responses.setdefault("503", _error("The owning service or the bus is unavailable"))
    op["responses"] = dict(sorted(responses.items()))
    op["x-access"] = route.access
    if route.subject:
        op["x-subject"] = route.subject
    return op


def build(app: web.Application, server_url: str) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.ref(ErrorBody, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for route in app[ROUTE_TABLE]:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    serving = served(app)
    for (method, path), op in STATIC.items():
        if (method, path) in serving or ("*", path) in serving:
            paths.setdefault(path, {})[method.lower()] = op
    components, resolved_paths = schemas.finish(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "syncplane webhook-gateway",
            "version": "1.0.0",
            "description": "The only HTTP edge of syncplane: the app API `/api/v1` (bearer "
            "JWT; a token reaches only its subject's `users/{user_id}` unless it has the "
            "`admin` scope), OAuth connect redirects, provider webhooks, health. Errors are "
            '`{"error": {"code", "message"}}`.',
        },
        "servers": [{"url": server_url}],
        "paths": dict(sorted(resolved_paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
    }


# The router is frozen once the app serves, so the document is built once, on first ask.
DOCUMENT = web.AppKey("openapi_document", dict[str, dict[str, Any]])


async def openapi_document(call: Call) -> web.StreamResponse:
    app = call.request.app
    cache = app[DOCUMENT]
    if "doc" not in cache:
        cache["doc"] = build(app, call.gateway.settings.public_base_url)
    return web.json_response(cache["doc"])


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    openapi: str


ROUTES = (
    Route(
        "GET",
        "/openapi.json",
        openapi_document,
        "This document",
        access="public",
        tag="ops",
        replies=(Reply(200, "OpenAPI 3.1", OpenApiDocument),),
    ),
)


def setup(gateway: Gateway) -> None:
    gateway.app[DOCUMENT] = {}
    register(gateway.app, ROUTES)
