"""The OpenAPI document covers every route the gateway's router serves, and is sound."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from webhook_gateway.app import build
from webhook_gateway.openapi import build as build_document
from webhook_gateway.openapi import served
from webhook_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit

SETTINGS = GatewaySettings(api_jwt_secret="j" * 40, oauth_state_secret="o" * 40)
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    runtime = build(SETTINGS)
    return {"doc": build_document(runtime.http, "http://gw"), "served": served(runtime.http)}


def undocumented(doc: dict[str, Any], routes: set[tuple[str, str]]) -> list[str]:
    paths = doc["paths"]
    return sorted(
        f"{method} {path}"
        for method, path in routes
        if path not in paths or (method != "*" and method.lower() not in paths[path])
    )


def test_every_served_route_is_documented(document: dict[str, Any]) -> None:
    paths = document["doc"]["paths"]
    assert undocumented(document["doc"], document["served"]) == [], "missing from /openapi.json"
    # ...and nothing is documented that is not served.
    served_paths = {path for _, path in document["served"]}
    assert set(paths) <= served_paths
    # Known surfaces are all there (a guard against an empty router passing the above).
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/connect/{provider}/start"):
        assert path in paths


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_sound_openapi_3_1(document: dict[str, Any]) -> None:
    doc = document["doc"]
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    ids = []
    for path, methods in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in methods.items():
            assert method in METHODS
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method} {path}"
            assert op["responses"], f"{method} {path}"
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
    assert len(ids) == len(set(ids))


def test_user_routes_are_scoped_and_admin_routes_need_admin(document: dict[str, Any]) -> None:
    for path, methods in document["doc"]["paths"].items():
        for op in methods.values():
            if path.startswith("/api/v1/users/"):
                assert op["x-access"] == "user"
            if path.startswith("/api/v1/admin/"):
                assert op["x-access"] == "admin"
            if path.startswith("/api/"):
                assert op["security"], path


def test_a_route_added_behind_the_tables_back_is_caught() -> None:
    async def stray(_: web.Request) -> web.Response:
        return web.Response()

    runtime = build(SETTINGS)
    runtime.http.router.add_post("/api/v1/users/{user_id}/stray", stray)
    runtime.http.router.add_route("*", "/webhooks/fitbit", stray)
    doc = build_document(runtime.http, "http://gw")
    assert undocumented(doc, served(runtime.http)) == [
        "* /webhooks/fitbit",
        "POST /api/v1/users/{user_id}/stray",
    ]
