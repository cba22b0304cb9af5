"""`commsync serve`: the HTTP API for the platform and its dashboards (FastAPI).

Each route translates: it reads the request (with the caller's credential), calls one method of
the service, and writes the response. Who may do what is the service's rule: writes and events
need the admin key (`COMMSYNC_API_KEY`); a customer's feed and dismissals need that customer's
token. Refusals arrive as errors and one handler gives each its status code.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from commsync import __version__, logs
from commsync.api.access import Caller
from commsync.api.project import Project
from commsync.api.service import UNAVAILABLE, Service, describe_unavailable
from commsync.errors import (
    CommsyncError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from commsync.http.feedpath import FEED_ERROR, FeedFastPath, feed_headers
from commsync.http.guards import InFlight, RequestLimits, ScopedCors, SecurityHeaders
from commsync.http.metrics import Metrics

log = logging.getLogger(__name__)
KEY_TTL = 10.0  # seconds a serve process trusts its copy of the signing key
READ_TIMEOUT = 2.0  # seconds a read on the event loop (the feed) may wait for the store
# Seconds SIGTERM waits for in-flight requests, then for the delivery worker's message in hand:
# a request or a worker blocked on a store that went silent must not keep serve from stopping.
SHUTDOWN_GRACE = 10.0


class EventIn(BaseModel):
    type: str = Field(min_length=1, max_length=64, description="Event slug, e.g. payment_received.")
    data: dict[str, Any] = Field(description="The payload: the event's placeholder keys.")
    key: str | None = Field(
        default=None, max_length=255, description="Idempotency key: a repeat queues nothing."
    )


class CustomerIn(BaseModel):
    email: str = Field(max_length=320)
    username: str | None = Field(default=None, max_length=255)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    display_name: str | None = Field(default=None, max_length=255)
    locale: str | None = Field(default=None, max_length=35)


class ProductIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)


class MembershipIn(BaseModel):
    product: str = Field(max_length=128)
    status: str = Field(max_length=32)


class TokenIn(BaseModel):
    ttl: str = Field(
        default="15m",
        max_length=24,
        description="How long the token lives, as for `commsync token --ttl`: 15m, 12h, 30d.",
    )


class NoticeOut(BaseModel):
    id: str = Field(description="The notice's id: its file path under broadcasts/, without .yaml.")
    heading: str = Field(description="Plain text (the rendered subject); never markup.")
    html: str = Field(description="The rendered content, sanitised HTML.")
    message_type: str = Field(description="info, success, warning or error.")
    dismissible: bool
    expires_at: str | None = Field(description="ISO 8601, or null.")


class FeedOut(BaseModel):
    customer: str
    notices: list[NoticeOut]


# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, and two such
# hand-offs per request cost the feed more than its own work (docs/benchmarks.md).
async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _caller(authorization: Annotated[str | None, Header()] = None) -> Caller:
    return Caller.http(authorization)


async def _admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    service: Service = request.app.state.service
    return service.authorize_admin(Caller.http(authorization))


Svc = Annotated[Service, Depends(_service)]
Who = Annotated[Caller, Depends(_caller)]
Admin = Annotated[Caller, Depends(_admin)]  # resolved before the body is parsed: 401 comes first
router = APIRouter()


@router.get("/healthz", tags=["operations"])
def healthz(service: Svc) -> JSONResponse:
    """200 while the store takes writes and the delivery worker (if any) keeps up; else 503."""
    health = service.health()
    body = {
        "status": "ok" if health.ok else "unavailable",
        "store": health.store,
        "worker": health.worker,
        "version": __version__,
    }
    return JSONResponse(body, status_code=200 if health.ok else 503)


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
def metrics(request: Request, service: Svc) -> Response:
    body, content_type = request.app.state.metrics.render(service.delivery_counts())
    return Response(body, media_type=content_type)


@router.get("/widget.js", tags=["dashboards"], response_class=PlainTextResponse)
def widget(service: Svc) -> Response:
    return Response(
        service.widget_script(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get(
    "/v1/customers/{customer_id}/notices",
    tags=["dashboards"],
    response_model=FeedOut,
    responses={
        401: {"description": "Missing, forged or expired token"},
        403: {"description": "A token of another customer"},
        404: {"description": "No such customer"},
    },
)
async def notices(
    request: Request,
    customer_id: str,
    service: Svc,
    caller: Who,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The customer's notices: active, targeted at them, not dismissed, inside their window.

    The hot path of every dashboard page view, answered before FastAPI by `CommsyncApi`
    (http/feedpath.py); this route documents it and raises what that call raised, for the
    error handlers. Each response carries an ETag (a request with `If-None-Match` holding it
    gets 304) and is kept by the service until the customer's feed changes. It runs on the
    event loop rather than in the thread pool: a kept answer costs microseconds and a fresh
    one two reads well under a millisecond (SQLite in WAL mode never waits for writers, nor
    does PostgreSQL), while handing each request to a thread cost three times as much under
    load (docs/benchmarks.md). Everything that writes runs in the thread pool.
    """
    failed = request.scope.get(FEED_ERROR)
    if failed is not None:
        raise failed
    started = time.perf_counter()
    answer = service.customer_feed(customer_id, caller)
    request.app.state.metrics.feed(time.perf_counter() - started)
    status, headers = feed_headers(
        answer, None if if_none_match is None else if_none_match.encode("latin-1")
    )
    return Response(
        answer.body if status == 200 else b"",
        status_code=status,
        headers={k.decode(): v.decode() for k, v in headers if k != b"content-length"},
    )


@router.post(
    "/v1/customers/{customer_id}/notices/{notice_id:path}/dismiss",
    status_code=204,
    tags=["dashboards"],
)
def dismiss(customer_id: str, notice_id: str, service: Svc, caller: Who) -> Response:
    service.dismiss_notice(customer_id, notice_id, caller)
    return Response(status_code=204)


@router.post("/v1/events", status_code=202, tags=["platform"])
def events(event: EventIn, service: Svc, caller: Admin) -> JSONResponse:
    result = service.fire_event(event.type, event.data, event.key, caller=caller)
    return JSONResponse(result.to_json(), status_code=200 if result.duplicate else 202)


@router.put("/v1/customers/{customer_id}", tags=["platform"])
def put_customer(customer_id: str, body: CustomerIn, service: Svc, caller: Admin) -> dict[str, Any]:
    done = service.put_customer(customer_id, body.model_dump(), caller)
    return {"id": done.key, "created": done.created}


@router.put("/v1/products/{slug}", tags=["platform"])
def put_product(slug: str, body: ProductIn, service: Svc, caller: Admin) -> dict[str, Any]:
    done = service.put_product(slug, body.name, caller)
    return {"slug": done.key, "created": done.created}


@router.put("/v1/customers/{customer_id}/memberships", tags=["platform"])
def put_memberships(
    customer_id: str, body: list[MembershipIn], service: Svc, caller: Admin
) -> dict[str, Any]:
    count = service.put_memberships(customer_id, [m.model_dump() for m in body], caller)
    return {"customer": customer_id, "memberships": count}


@router.delete("/v1/customers/{customer_id}", status_code=204, tags=["platform"])
def delete_customer(customer_id: str, service: Svc, caller: Admin) -> Response:
    service.delete_customer(customer_id, caller)
    return Response(status_code=204)


@router.delete("/v1/products/{slug}", status_code=204, tags=["platform"])
def delete_product(slug: str, service: Svc, caller: Admin) -> Response:
    service.delete_product(slug, caller)
    return Response(status_code=204)


@router.get("/v1/event-types", tags=["platform"])
def event_types(service: Svc, caller: Admin) -> dict[str, Any]:
    return {
        "event_types": [
            {
                "type": e.slug,
                "description": e.description,
                "keys": [
                    {"name": k.name, "type": str(k.type), "description": k.description}
                    for k in e.keys
                ],
            }
            for e in service.event_types(caller)
        ]
    }


@router.post("/v1/customers/{customer_id}/token", tags=["platform"])
def customer_token(customer_id: str, body: TokenIn, service: Svc, caller: Admin) -> dict[str, Any]:
    issued = service.customer_token(customer_id, body.ttl, caller)
    return {
        "customer": issued.customer.id,
        "token": issued.token,
        "expires_at": issued.expires.isoformat(timespec="seconds"),
    }


@router.get("/v1/unsubscribe/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
def unsubscribe_page(token: str, service: Svc) -> HTMLResponse:
    page = service.unsubscribe_page(token)
    return HTMLResponse(page.html, status_code=page.status)


@router.post("/v1/unsubscribe/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, service: Svc) -> HTMLResponse:
    form = (await request.body()).decode("utf-8", "replace")
    one_click = "List-Unsubscribe=One-Click" in form
    page = await run_in_threadpool(service.unsubscribe, token, one_click=one_click)
    return HTMLResponse(page.html, status_code=page.status)


_STATUS = ((Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409))


def _refused(request: Request, exc: Exception) -> JSONResponse:
    """The one place a refusal from the service becomes a status code."""
    assert isinstance(exc, CommsyncError)
    if isinstance(exc, InvalidInput):
        return JSONResponse({"detail": exc.problems}, status_code=422)
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not parse (malformed JSON, a wrong shape): 422 — but on the
    platform's routes only for a caller holding the admin key; anyone else gets 401 and learns
    nothing about the API from the validation errors."""
    assert isinstance(exc, RequestValidationError)
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and "platform" in route.tags:
        service: Service = request.app.state.service
        try:
            service.authorize_admin(Caller.http(request.headers.get("authorization")))
        except Unauthorized as refused:
            return _refused(request, refused)
    # Where and what, never the input itself: it may be bytes that are not UTF-8 (FastAPI's own
    # handler fails on those with a 500), and echoing what a client sent helps no one.
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The store failed (down, locked, cut off): 503, so callers retry; the cause is logged."""
    route = getattr(request.scope.get("route"), "path", "?")  # the template: no tokens
    log.warning(
        "%s %s: the store is unavailable: %s", request.method, route, describe_unavailable(exc)
    )
    return JSONResponse(
        {"detail": "the store is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


class CommsyncApi(FastAPI):
    """FastAPI, with a customer's notices feed answered before anything else when the service
    can (http/feedpath.py): every other request, and every refusal, takes the whole way."""

    feed_path: FeedFastPath | None = None  # while the service runs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.feed_path
        if fast is not None and scope["type"] == "http" and scope["method"] == "GET":
            scope["app"] = self  # as Starlette sets it: what the guards read settings from
            if await fast.answered(scope, send):
                return
        await super().__call__(scope, receive, send)


def create_app(project: Project, *, deliver: bool = True) -> FastAPI:
    """The app for one project; the service opens when the server starts and closes when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(project, pool_size=16, read_timeout=READ_TIMEOUT)
        try:
            service.start_serving(deliver=deliver, key_ttl=KEY_TTL)
            settings = service.settings()
            app.state.limits, app.state.cors_origins = settings.limits, settings.cors_origins
            app.state.service = service
            assert isinstance(app, CommsyncApi)
            app.feed_path = FeedFastPath(service, app.state.metrics)
            yield
        finally:
            if isinstance(app, CommsyncApi):
                app.feed_path = None
            service.close(SHUTDOWN_GRACE)  # in-flight messages finish; claimed unsent ones go back

    # No /docs or /redoc: those pages load their scripts from a CDN, which the policy every HTML
    # response carries forbids. /openapi.json is the document; open it in any OpenAPI viewer.
    app = CommsyncApi(
        title="commsync",
        version=__version__,
        lifespan=lifespan,
        description=__doc__,
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = Metrics()
    # Outermost last: security headers on everything, CORS where browsers call, then limits.
    app.add_middleware(RequestLimits)
    app.add_middleware(InFlight)  # inside CORS and the headers: a 503 carries both
    app.add_middleware(ScopedCors)
    app.add_middleware(SecurityHeaders)
    app.include_router(router)
    for error in (Unauthorized, Forbidden, NotFound, Conflict, InvalidInput):
        app.add_exception_handler(error, _refused)
    for failure in UNAVAILABLE:
        app.add_exception_handler(failure, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid)
    return app


def factory() -> FastAPI:
    """For `uvicorn --factory` (several workers): the project comes from COMMSYNC_SERVE_ROOT."""
    logs.configure(os.environ.get("COMMSYNC_SERVE_LOG_LEVEL", "info"))
    root = Path(os.environ.get("COMMSYNC_SERVE_ROOT", ".")).resolve()
    project = Project(root, os.environ.get("COMMSYNC_SERVE_STORE") or None, dict(os.environ))
    return create_app(project, deliver=os.environ.get("COMMSYNC_SERVE_DELIVER", "1") != "0")
