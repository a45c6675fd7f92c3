"""Property-based requests generated from /openapi.json against the running gateway
(what Schemathesis would do, with hypothesis alone until it joins the dev dependencies).

Every documented operation is called with path, query and body values drawn from its
schemas — inside them and outside — and with no token, a malformed, expired or foreign
token, the path user's own token, another user's token, or an admin's. Whatever the
input: no 5xx other than 503 ``unavailable`` (an owner not running), 401 whenever the
token is not valid, 403 on another user's data or an admin route without the scope, only
documented statuses, and JSON bodies that match the documented schema.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from syncplane_common.provision import provision
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_harness import (
    Harness,
    expired_token,
    running_gateway,
    stand_in_token_service,
)

pytestmark = pytest.mark.integration

Json = dict[str, Any]
BAD_IDENTITIES = ("none", "garbage", "expired", "foreign_key")
IDENTITIES = (*BAD_IDENTITIES, "self", "other", "admin")
SAFE = string.ascii_letters + string.digits + "-_."
# Strings that have broken parsers before: empty, huge, unicode, separators, injections.
NASTY = ["", " ", "0", "-1", "null", "true", "../", "%00", "é", "💥", "a" * 3000, "'; --", "{}"]


@dataclass(repr=False)
class Target:
    gateway: Harness
    doc: Json
    ops: list[tuple[str, str, Json]]

    def __repr__(self) -> str:
        return f"Target({self.gateway.base_url})"


@pytest.fixture(scope="module")
async def target(nats_server: EmbeddedNats) -> AsyncIterator[Target]:
    await provision(nats_server.url)
    async with (
        stand_in_token_service(nats_server.url),
        running_gateway(nats_server.url, request_timeout_seconds=1.0) as gateway,
    ):
        resp = await gateway.client.get("/openapi.json")  # no token needed
        assert resp.status == 200
        doc = await resp.json()
        ops = [
            (path, method, op)
            for path, methods in sorted(doc["paths"].items())
            for method, op in sorted(methods.items())
        ]
        yield Target(gateway, doc, ops)


# -- values from schemas ---------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
any_json = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: Json, components: Json, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly fit ``schema`` (a pragmatic subset of JSON Schema)."""
    if depth > 4:
        return json_leaf
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return from_schema(components[name], components, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30)
        )
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), components, depth + 1)
        return st.lists(items, max_size=3)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, components, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, components, depth + 1)
                for k, v in props.items()
                if k not in required
            },
        )
    return any_json


def routable(segment: str) -> bool:
    """What can name a path segment at all: aiohttp's router matches no braces or slashes,
    and clients resolve dot segments away (a different path, not a value)."""
    return bool(segment) and segment not in (".", "..") and not set("{}/") & set(segment)


def as_query(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


# -- one generated request -------------------------------------------------------------------


@dataclass
class Case:
    template: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    has_body: bool
    identity: str
    owner: str


def _token(gateway: Harness, identity: str, owner: str, garbage: str) -> str | None:
    if identity == "none":
        return None
    if identity == "garbage":
        return garbage
    if identity == "expired":
        return expired_token(owner)
    if identity == "foreign_key":
        claims = {"sub": owner, "exp": int(time.time()) + 600, "scope": "admin"}
        return jwt.encode(claims, "another-secret-" + "x" * 32, algorithm="HS256")
    if identity == "admin":
        return gateway.token("ops", admin=True)
    return gateway.token(owner if identity == "self" else f"not-{owner}")


@st.composite
def cases(draw: st.DrawFn, target: Target) -> tuple[Json, Case]:
    path, method = draw(st.sampled_from([(path, method) for path, method, _ in target.ops]))
    op = target.doc["paths"][path][method]
    components = target.doc["components"]["schemas"]
    owner = "u-" + draw(st.text(SAFE, min_size=1, max_size=12))
    identity = draw(st.sampled_from(IDENTITIES))
    url = path
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        name, where, schema = param["name"], param["in"], param.get("schema", {})
        if name == "user_id":
            value: Any = owner
        elif where == "path":
            value = draw(
                st.one_of(from_schema(schema, components), st.text(SAFE, min_size=1, max_size=20))
                .map(str)
                .filter(routable)
            )
        elif where == "query":
            if not param.get("required") and draw(st.booleans()):
                continue
            value = as_query(
                draw(st.one_of(from_schema(schema, components), st.sampled_from(NASTY)))
            )
        else:
            continue
        if where == "path":
            url = url.replace("{" + name + "}", quote(str(value), safe=""))
        else:
            query[name] = value
    headers: dict[str, str] = {}
    garbage = draw(st.text(SAFE, min_size=1, max_size=40))
    token = _token(target.gateway, identity, owner, garbage)
    if token is not None:
        schemes = {k for s in op.get("security", []) for k in s}
        if "access_token" in schemes and draw(st.booleans()):
            query["access_token"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
    if query:
        url += "?" + "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query.items())
    body: Any = None
    has_body = "requestBody" in op and draw(st.integers(0, 9)) > 0
    if has_body:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        body = draw(st.one_of(from_schema(schema, components), any_json))
    return op, Case(path, method.upper(), url, headers, body, has_body, identity, owner)


# -- the property ----------------------------------------------------------------------------


def _check_schema(doc: Json, schema: Json, body: Any, where: str) -> None:
    root = {**schema, "components": doc["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    assert not errors, f"{where}: body does not match its schema: {errors[0].message}"


async def _exercise(target: Target, op: Json, case: Case) -> int:
    client = target.gateway.client
    kwargs: dict[str, Any] = {"headers": case.headers, "allow_redirects": False}
    if case.has_body:
        kwargs["json"] = case.body
    async with client.request(case.method, case.url, **kwargs) as resp:
        status = resp.status
        where = f"{case.method} {case.url} as {case.identity} -> {status}"
        content_type = resp.headers.get("Content-Type", "")
        body = None
        text = ""
        if content_type.startswith("application/json"):
            body = await resp.json()
        elif status == 503:  # (a 200 may be an endless event stream: not read)
            text = await resp.text()
    # A 503 says why: the JSON error envelope for the API, or, for the console's HTML
    # pages, a page that its operation documents as its 503 answer.
    documented_html = "text/html" in op["responses"].get("503", {}).get("content", {})
    assert status < 500 or (
        status == 503
        and (
            (body is not None and body["error"]["code"] in ("unavailable",))
            or (documented_html and content_type.startswith("text/html") and "Not done" in text)
        )
    ), f"{where}: {body or text[:300]}"
    secured = bool(op.get("security"))
    scoped = "{user_id}" in case.template or any(
        p["name"] == "user_id" for p in op.get("parameters", []) if p["in"] == "query"
    )
    if secured and case.identity in BAD_IDENTITIES:
        assert status == 401, where
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), where
    elif (secured and case.identity == "other" and (scoped or op["x-access"] == "admin")) or (
        secured and case.identity == "self" and op["x-access"] == "admin"
    ):
        assert status == 403, where
    assert str(status) in op["responses"], f"{where}: undocumented status"
    documented = op["responses"][str(status)].get("content", {})
    if body is not None and "application/json" in documented:
        _check_schema(target.doc, documented["application/json"]["schema"], body, where)
    return status


async def test_every_operation_with_every_identity(target: Target) -> None:
    for path, method, op in target.ops:
        for identity in IDENTITIES:
            owner = "u-cover"
            url = path
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    value = owner if param["name"] == "user_id" else "strava"
                    url = url.replace("{" + param["name"] + "}", value)
            if any(p["name"] == "user_id" for p in op.get("parameters", [])):
                url += "" if "{user_id}" in path else f"?user_id={owner}"
            token = _token(target.gateway, identity, owner, "garbage")
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            has_body = "requestBody" in op
            case = Case(path, method.upper(), url, headers, {}, has_body, identity, owner)
            await _exercise(target, op, case)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_generated_requests_respect_auth_and_never_fail(
    target: Target, data: st.DataObject
) -> None:
    op, case = data.draw(cases(target))
    status = await _exercise(target, op, case)
    event(f"{case.method} {case.template} {case.identity} {status}")
