"""The gateway's route table: one list that both registers the routes and documents them.

Each surface module describes its routes as :class:`Route` values (path, method, who may
call it, the pydantic models of its path, query and body, what it answers) and calls
:func:`register`. Registration wraps the handler with what every route needs in the same
order — authenticate (401), authorize (403), validate path (404), query and body (400),
map the error tree to statuses — and records the route under :data:`ROUTE_TABLE`, from
which :mod:`webhook_gateway.openapi` builds the document. A route cannot be served
without being documented, nor documented without being served.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from syncplane_common import rpc
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.contracts import Contract
from syncplane_common.contracts import Reply as ReplyContract
from syncplane_common.errors import RetryableError, SyncplaneError
from syncplane_common.rpc import describe_validation

from webhook_gateway._api_models import OwnerReply
from webhook_gateway.auth import AuthError, Principal, bearer_from_header
from webhook_gateway.context import GATEWAY, Gateway
from webhook_gateway.responses import error_response, from_error

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# public: anyone (providers, health probes). user: a bearer JWT whose subject is the
# path's {user_id}, or an admin. admin: a bearer JWT with the admin scope.
# A route with ``token_in_query`` also takes the JWT as ``?access_token=`` (see auth.py).
Access = Literal["public", "user", "admin"]


@dataclass(frozen=True)
class Reply:
    """One documented answer of a route (errors added by :mod:`openapi` from the route)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """What a wrapped handler is given: the request, already authenticated and parsed."""

    request: web.Request
    gateway: Gateway
    principal: Principal | None
    _path: BaseModel | None
    _query: BaseModel | None
    _body: BaseModel | None

    def path(self, model: type[M]) -> M:
        return _as(self._path, model)

    def query(self, model: type[M]) -> M:
        return _as(self._query, model)

    def body(self, model: type[M]) -> M:
        return _as(self._body, model)

    @property
    def clock(self) -> Clock:
        return self.request.app[CLOCK]


def _as(value: BaseModel | None, model: type[M]) -> M:
    if not isinstance(value, model):
        raise TypeError(f"route parsed {type(value).__name__}, handler wants {model.__name__}")
    return value


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    tag: str
    replies: tuple[Reply, ...]
    path_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    body_model: type[BaseModel] | None = None
    description: str = ""
    # The request/reply subject the route fronts: its owner not running means 503.
    subject: str | None = None
    token_in_query: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")

    @property
    def path_names(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))


ROUTE_TABLE = web.AppKey("route_table", list[Route])
CLOCK = web.AppKey("clock", Clock)


def ensure_defaults(app: web.Application) -> None:
    """What every surface relies on; tests put a ManualClock in before starting."""
    if ROUTE_TABLE not in app:
        app[ROUTE_TABLE] = []
    if CLOCK not in app:
        app[CLOCK] = SystemClock()


def register(app: web.Application, routes: tuple[Route, ...]) -> None:
    ensure_defaults(app)
    for route in routes:
        if route.path_model is not None:
            declared = set(route.path_model.model_fields)
            if declared != set(route.path_names):
                raise ValueError(f"{route.path}: path model fields {sorted(declared)}")
        app.router.add_route(route.method, route.path, _wrap(route), name=route.operation_id)
        app[ROUTE_TABLE].append(route)


# -- the wrapper ---------------------------------------------------------------------------


def _unauthorized(message: str, *, token_given: bool) -> web.Response:
    challenge = 'Bearer realm="syncplane"'
    if token_given:
        challenge += ', error="invalid_token"'
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _principal(route: Route, request: web.Request, gateway: Gateway) -> Principal:
    token = bearer_from_header(request.headers.get("Authorization"))
    if token is None and route.token_in_query:
        token = request.query.get("access_token") or None
    return gateway.tokens.authenticate(token, request.app[CLOCK].now())


def _check_access(route: Route, request: web.Request, principal: Principal) -> web.Response | None:
    if principal.admin:
        return None
    if route.access == "admin":
        return error_response(403, "forbidden", "this route needs the admin scope")
    user_id = request.match_info.get("user_id")
    if user_id is None and route.query_model and "user_id" in route.query_model.model_fields:
        user_id = request.query.get("user_id")  # connect start names its user in the query
    if user_id is not None and user_id != principal.subject:
        return error_response(403, "forbidden", "a token reaches only its own user's data")
    return None


def _parse(model: type[M], data: Mapping[str, Any]) -> M:
    return model.model_validate(dict(data))


async def _read_body(route: Route, request: web.Request) -> BaseModel | None:
    if route.body_model is None:
        return None
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError as err:
        raise _BadRequest("the body is not JSON") from err
    if not isinstance(data, dict):
        raise _BadRequest("the body must be a JSON object")
    return route.body_model.model_validate(data)


class _BadRequest(Exception):
    pass


def _query_params(route: Route, request: web.Request) -> dict[str, str]:
    if route.query_model is None:
        return {}
    # Multi-valued parameters are not part of this API: the last value wins.
    return {k: v for k, v in request.query.items() if k in route.query_model.model_fields}


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        principal: Principal | None = None
        if route.access != "public":
            try:
                principal = _principal(route, request, gateway)
            except AuthError as err:
                return _unauthorized(err.message, token_given=err.token_given)
            denied = _check_access(route, request, principal)
            if denied is not None:
                return denied
        try:
            path = (
                _parse(route.path_model, request.match_info)
                if route.path_model is not None
                else None
            )
        except ValidationError as err:
            return error_response(404, "not_found", describe_validation(err))
        try:
            query = (
                _parse(route.query_model, _query_params(route, request))
                if route.query_model is not None
                else None
            )
            body = await _read_body(route, request)
        except ValidationError as err:
            return error_response(400, "bad_request", describe_validation(err))
        except _BadRequest as err:
            return error_response(400, "bad_request", str(err))
        call = Call(request, gateway, principal, path, query, body)
        try:
            return await route.handler(call)
        except SyncplaneError as err:
            return from_error(err)
        except web.HTTPException:
            raise
        except Exception:
            # A bug: logged with its traceback, answered in our shape without details.
            log.exception("%s %s failed", route.method, route.path)
            return error_response(500, "internal", "internal error")

    handle.__name__ = route.handler.__name__
    return handle


async def ask_owner(
    call: Call, subject: str, message: Contract, reply_type: type[ReplyContract] = OwnerReply
) -> dict[str, Any]:
    """The owner's reply to ``message`` on ``subject``, without ``error``. A subject with
    a reply contract names it, so a reply that breaks the contract is refused here
    (``unavailable``), not passed on to the app; the others pass through as they come."""
    with bus_errors(subject):
        reply = await rpc.request(
            call.gateway.broker,
            subject,
            message,
            reply_type,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    return reply.model_dump(mode="json", exclude={"error", "schema_version"})


async def pass_owner(
    call: Call, subject: str, message: Contract, reply_type: type[ReplyContract] = OwnerReply
) -> web.Response:
    """The owner's successful reply as the response body, bytes as they came (less
    ``schema_version`` and ``error``): for the hot reads, where parsing a reply only to
    write it out again cost more than everything else the gateway does. Errors are
    mapped as :func:`ask_owner` maps them."""
    with bus_errors(subject):
        body = await rpc.request_json(
            call.gateway.broker,
            subject,
            message,
            reply_type,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    return web.Response(body=body, content_type="application/json", charset="utf-8")


@contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """Failures of NATS itself (not connected, no PubAck in time) as "try later"."""
    try:
        yield
    except SyncplaneError:
        raise
    except Exception as err:
        log.warning("%s failed: %s: %s", what, type(err).__name__, err)
        raise RetryableError(f"{what}: the message bus is unavailable", retry_after=1.0) from err
