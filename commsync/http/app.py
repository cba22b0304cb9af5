"""`commsync serve`: the HTTP API for the platform and its dashboards (FastAPI).

Routes call the same use cases as the CLI. Writes and events need the admin key
(`COMMSYNC_API_KEY`); a customer's feed and dismissals need that customer's token.
"""

import hmac
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from commsync import __version__
from commsync.api.core import Project, load
from commsync.api.deliver import Worker
from commsync.api.events import EventRejected, EventService
from commsync.auth import TokenError, verify_token
from commsync.errors import ValidationFailed
from commsync.http import pages
from commsync.http.feed import Feed
from commsync.http.metrics import Metrics
from commsync.model import CustomerRecord, JsonObject, MembershipRecord, ProductRecord
from commsync.records import CUSTOMERS, MEMBERSHIPS, PRODUCTS, RowError
from commsync.store.sql import open_store

KEY_TTL = 10.0  # seconds a serve process trusts its copy of the signing key


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


class Service:
    """What the routes share: the store, the settings, the feed, events, metrics, the worker."""

    def __init__(self, project: Project, deliver: bool) -> None:
        loaded = load(project)
        if loaded.settings is None:
            raise ValidationFailed(loaded.diagnostics)
        self.settings = loaded.settings
        self.store = open_store(self.settings.store_url, pool_size=16)
        self._key = (self.store.signing_key(), time.monotonic())
        self.api_key = project.env.get("COMMSYNC_API_KEY") or None
        self.feed = Feed(self.store, self.settings)
        self.events = EventService(self.store, self.settings, loaded.catalog, loaded.layout)
        self.metrics = Metrics(self.store)
        self.stop = threading.Event()
        self.worker = Worker(self.store, self.settings, dict(project.env)) if deliver else None
        self.thread: threading.Thread | None = None

    @property
    def key(self) -> bytes:
        """The store's signing key, re-read every KEY_TTL seconds (`commsync rotate-key`)."""
        key, read_at = self._key
        if time.monotonic() - read_at >= KEY_TTL:
            key = self.store.signing_key()
            self._key = (key, time.monotonic())
        return key

    def start(self) -> None:
        self.feed.warm()
        if self.worker is not None:
            worker = self.worker
            self.thread = threading.Thread(
                target=lambda: worker.run_blocking(loop=True, stop=self.stop),
                name="commsync-deliver",
            )
            self.thread.start()

    def shutdown(self) -> None:
        """In-flight messages finish; claimed but unsent ones go back to the queue."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.store.close()


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return authorization[len("Bearer ") :].strip()


def _owner(service: Service, customer_id: str, authorization: str | None) -> None:
    """401 without a valid token, 403 with another customer's."""
    try:
        owner = verify_token(service.key, _bearer(authorization), datetime.now(UTC))
    except TokenError as exc:
        raise HTTPException(401, exc.message, headers={"WWW-Authenticate": "Bearer"}) from exc
    if owner != customer_id:
        raise HTTPException(403, "this token is for another customer")


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


def create_app(project: Project, *, deliver: bool = True) -> FastAPI:
    service_holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(project, deliver)
        service_holder["service"] = service
        app.state.service = service
        service.start()
        try:
            yield
        finally:
            service.shutdown()

    app = FastAPI(title="commsync", version=__version__, lifespan=lifespan, description=__doc__)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )

    def svc() -> Service:
        return service_holder["service"]

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        service = svc()
        if service.api_key is None:
            raise HTTPException(401, "the admin API is disabled: set COMMSYNC_API_KEY")
        if not hmac.compare_digest(_bearer(authorization).encode(), service.api_key.encode()):
            raise HTTPException(401, "invalid admin key", headers={"WWW-Authenticate": "Bearer"})

    def customer_of(
        customer_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> CustomerRecord:
        service = svc()
        _owner(service, customer_id, authorization)
        customer = service.store.customer(customer_id)
        if customer is None:
            raise HTTPException(404, "no such customer")
        return customer

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        try:
            svc().store.product_slugs()
        except Exception as exc:  # a health check reports, it does not raise
            return JSONResponse({"status": "unavailable", "store": str(exc)[:200]}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics() -> Response:
        body, content_type = svc().metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/widget.js", tags=["dashboards"], response_class=PlainTextResponse)
    def widget() -> Response:
        script = files("commsync.http").joinpath("widget.js").read_text(encoding="utf-8")
        return Response(
            script, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
        )

    @app.get(
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
        customer_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """The customer's notices: active, targeted at them, not dismissed, inside their window.

        The hot path of every dashboard page view: one connection, two prepared statements,
        compiled notices from a cache, JSON written directly. It runs on the event loop rather
        than in the thread pool: the two reads take well under a millisecond (SQLite in WAL mode
        never waits for writers, nor does PostgreSQL), while handing each request to a thread
        cost three times as much under load (docs/benchmarks.md). Everything that writes runs
        in the thread pool.
        """
        started = time.perf_counter()
        service = svc()
        _owner(service, customer_id, authorization)
        customer, found = service.feed.for_customer(customer_id, datetime.now(UTC))
        if customer is None:
            raise HTTPException(404, "no such customer")
        body = json.dumps({"customer": customer.id, "notices": found}, separators=(",", ":"))
        service.metrics.feed(time.perf_counter() - started)
        return Response(body, media_type="application/json")

    @app.post(
        "/v1/customers/{customer_id}/notices/{notice_id:path}/dismiss",
        status_code=204,
        tags=["dashboards"],
    )
    def dismiss(
        notice_id: str, customer: Annotated[CustomerRecord, Depends(customer_of)]
    ) -> Response:
        now = datetime.now(UTC)
        dismissible = svc().feed.dismissible(customer, notice_id, now)
        if dismissible is None:
            if svc().store.dismissed(notice_id, customer.id):
                return Response(status_code=204)  # dismissing twice is dismissing once
            raise HTTPException(404, "no such notice for this customer")
        if not dismissible:
            raise HTTPException(409, "this notice cannot be dismissed")
        svc().store.dismiss(notice_id, customer.id, now)
        return Response(status_code=204)

    @app.post("/v1/events", status_code=202, tags=["platform"], dependencies=[Depends(admin)])
    def events(event: EventIn) -> JSONResponse:
        try:
            result: JsonObject = svc().events.fire(event.type, event.data, event.key)
        except EventRejected as exc:
            return JSONResponse({"detail": exc.problems}, status_code=422)
        return JSONResponse(result, status_code=200 if result.get("duplicate") else 202)

    def _row(layout: Any, fields: dict[str, Any]) -> Any:
        try:
            return layout.build({k: "" if v is None else str(v) for k, v in fields.items()})
        except RowError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.put("/v1/customers/{customer_id}", tags=["platform"], dependencies=[Depends(admin)])
    def put_customer(customer_id: str, body: CustomerIn) -> dict[str, Any]:
        record: CustomerRecord = _row(CUSTOMERS, {"id": customer_id, **body.model_dump()})
        counts = svc().store.upsert_customers([record])
        return {"id": record.id, "created": counts.inserted == 1}

    @app.put("/v1/products/{slug}", tags=["platform"], dependencies=[Depends(admin)])
    def put_product(slug: str, body: ProductIn) -> dict[str, Any]:
        record: ProductRecord = _row(PRODUCTS, {"slug": slug, "name": body.name})
        counts = svc().store.upsert_products([record])
        return {"slug": record.slug, "created": counts.inserted == 1}

    @app.put(
        "/v1/customers/{customer_id}/memberships", tags=["platform"], dependencies=[Depends(admin)]
    )
    def put_memberships(customer_id: str, body: list[MembershipIn]) -> dict[str, Any]:
        store = svc().store
        if store.customer(customer_id) is None:
            raise HTTPException(404, "no such customer")
        rows: list[MembershipRecord] = [
            _row(MEMBERSHIPS, {"customer_id": customer_id, **m.model_dump()}) for m in body
        ]
        unknown = sorted({r.product for r in rows} - store.product_slugs())
        if unknown:
            raise HTTPException(422, f"unknown product(s): {', '.join(unknown)}")
        if len({r.product for r in rows}) != len(rows):
            raise HTTPException(422, "each product at most once")
        store.replace_memberships(customer_id, rows)
        return {"customer": customer_id, "memberships": len(rows)}

    @app.get("/v1/unsubscribe/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        service = svc()
        address = service.store.address_for_token(token)
        if address is None:
            return HTMLResponse(pages.unknown(service.settings), status_code=404)
        return HTMLResponse(pages.confirm(service.settings, address, f"/v1/unsubscribe/{token}"))

    @app.post("/v1/unsubscribe/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        service = svc()
        address = service.store.address_for_token(token)
        if address is None:
            return HTMLResponse(pages.unknown(service.settings), status_code=404)
        form = (await request.body()).decode("utf-8", "replace")
        source = "one-click" if "List-Unsubscribe=One-Click" in form else "unsubscribe page"
        service.store.suppress(address, "marketing", "unsubscribe", source, datetime.now(UTC))
        return HTMLResponse(pages.done(service.settings))

    return app


def factory() -> FastAPI:
    """For `uvicorn --factory` (several workers): the project comes from COMMSYNC_SERVE_ROOT."""
    root = os.environ.get("COMMSYNC_SERVE_ROOT", ".")
    from pathlib import Path

    project = Project(
        Path(root).resolve(), os.environ.get("COMMSYNC_SERVE_STORE") or None, dict(os.environ)
    )
    return create_app(project, deliver=os.environ.get("COMMSYNC_SERVE_DELIVER", "1") != "0")
