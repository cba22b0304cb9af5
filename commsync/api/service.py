"""The service: every use case of commsync, one method each, on one object per process.

The faces call it and only translate: `cli/` turns flags into arguments and results into text;
`http/` turns requests into arguments (with the caller's credential) and results into responses.
Methods that HTTP serves take a `Caller`; the command line's is the local operator.
The work is done in the use-case modules beside this one; this class is their table of contents.
It is longer than 400 lines because it names every use case, one short method each: splitting
the table of contents would only hide where a face's call lands.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

# Only what every command needs is imported here; each use case's module is imported by the
# method that calls it, so that a small command (`token`) does not load the planner, the
# renderer, the delivery engine and the event service (start-up, issue 12).
from commsync.api.access import OPERATOR, Caller, require_admin
from commsync.api.context import Context
from commsync.api.project import Project
from commsync.errors import CommsyncError
from commsync.store.failures import describe

if TYPE_CHECKING:
    from commsync.api.applying import ApplyRequest
    from commsync.api.dashboards import DashboardService, Page
    from commsync.api.feed import Feed, FeedAnswer
    from commsync.api.gitops import DriftItem
    from commsync.api.inventory import EmailRow, FileEdit
    from commsync.api.operations import (
        Cancelled,
        DeliveryCounts,
        Health,
        IssuedToken,
        QueueListing,
        StatusReport,
    )
    from commsync.api.payloads import Payload
    from commsync.api.planning import PlanResult, ValidationReport
    from commsync.api.platform import ImportOptions, InitReport, RecordKind, Upserted
    from commsync.api.preview import Preview
    from commsync.api.suppressions import Suppressed, SuppressionList
    from commsync.apply.executor import ApplyListener, ApplyReport
    from commsync.apply.run import Confirm
    from commsync.config.settings import Settings
    from commsync.delivery.engine import DeliveryReport
    from commsync.delivery.worker import Worker
    from commsync.events.service import EventService
    from commsync.model import EventResult, ImportCounts, JsonObject
    from commsync.model.catalog import EventDef
    from commsync.render.emails import SystemEmailFactories
    from commsync.store.roles import FailedRecipient, JournalEntry, LockHolder

    UNAVAILABLE: tuple[type[Exception], ...]

# Names the faces import from here, loaded when first asked for.
_LAZY = {
    "UNAVAILABLE": "commsync.store.failures",  # what a call raises when the store fails: 503
    "ApplyRequest": "commsync.api.applying",
    "DeliveryReport": "commsync.delivery.engine",
    "ImportOptions": "commsync.api.platform",
    "JournalEntry": "commsync.store.roles",
    "QueueListing": "commsync.api.operations",
    "StatusReport": "commsync.api.operations",
}


_SOURCE = {"UNAVAILABLE": "STORE_ERRORS"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), _SOURCE.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What the faces may name of the layers below: the service's own vocabulary.
__all__ = [
    "UNAVAILABLE",
    "ApplyRequest",
    "Caller",
    "DeliveryReport",
    "ImportOptions",
    "JournalEntry",
    "QueueListing",
    "Service",
    "StatusReport",
    "describe_unavailable",
]

# UNAVAILABLE: what a call raises when the store fails rather than the caller (serve answers
# 503 for these); describe_unavailable names one in a line.
describe_unavailable = describe

RoundHook = Callable[[int, "DeliveryReport"], None]

log = logging.getLogger(__name__)


class Service:
    """Opened once per process (`with Service(project) as service:`), closed at the end."""

    def __init__(
        self, project: Project, *, pool_size: int = 5, read_timeout: float | None = None
    ) -> None:
        self.project = project
        self.ctx = Context(project, pool_size, read_timeout)
        self._events: EventService | None = None
        self._dashboards: DashboardService | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: Worker | None = None  # serve's background worker, when it runs one

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, grace: float | None = None) -> None:
        """Stop the background worker (in-flight messages finish) and close the stores.

        With `grace`, wait at most that many seconds for the worker: one blocked on a store that
        went silent is left behind (its claims are taken over like a vanished worker's) rather
        than holding the process forever.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace)
            if self._thread.is_alive():
                log.warning(
                    "the delivery worker did not stop within %.0f s (waiting on the store?); "
                    "leaving it: its claimed messages are recovered like a vanished worker's",
                    grace,
                )
            self._thread = None
        self.ctx.close()

    # -- the repository ------------------------------------------------------------------------

    def init_project(self, root: Path, *, demo: bool) -> InitReport:
        """`init`: a new repository at `root`; with `demo`, the demo network and its data."""
        from commsync.api import platform

        return platform.init_project(root, demo=demo, env=self.project.env)

    def settings(self) -> Settings:
        """The working tree's commsync.yaml, checked (`serve` checks it before it starts)."""
        return self.ctx.settings()

    def validate(
        self, *, ref: str | None = None, use_store: bool = True, git_paths: bool = False
    ) -> ValidationReport:
        """`validate`: every problem of every file; `git_paths` for annotations in CI."""
        from commsync.api import planning

        return planning.validate(self.ctx, ref=ref, use_store=use_store, git_paths=git_paths)

    def plan(
        self, *, ref: str | None = None, changed_since: str | None = None, out: Path | None = None
    ) -> PlanResult:
        """`plan`: what apply would change; saved to `out` when given."""
        from commsync.api import planning

        return planning.make_plan(self.ctx, ref=ref, changed_since=changed_since, out=out)

    def apply(
        self,
        request: ApplyRequest,
        *,
        confirm: Confirm | None = None,
        listener: ApplyListener | None = None,
    ) -> ApplyReport:
        """`apply`: a saved plan, or a plan made now and confirmed."""
        from commsync.api import applying

        return applying.apply(self.ctx, request, confirm=confirm, listener=listener)

    def drift(self, ref: str | None = None) -> list[DriftItem]:
        """`drift`: what changed in the store outside commsync."""
        from commsync.api import gitops

        return gitops.drift(self.ctx, ref)

    def pull(self) -> list[FileEdit]:
        """`pull`: files for live objects no file manages."""
        from commsync.api import gitops

        return gitops.pull(self.ctx)

    def list_emails(self) -> list[EmailRow]:
        """`emails list`: registered defaults × installed × customised × importable."""
        from commsync.api import inventory

        return inventory.list_emails(self.ctx)

    def import_emails(self, slugs: Sequence[str], every: bool) -> list[FileEdit]:
        """`emails import`: files that install registered defaults."""
        from commsync.api import inventory

        return inventory.import_emails(self.ctx, slugs, every)

    def reset_emails(self, slugs: Sequence[str], every: bool) -> list[FileEdit]:
        """`emails reset`: override keys removed from email files."""
        from commsync.api import inventory

        return inventory.reset_emails(self.ctx, slugs, every)

    def preview(
        self,
        file: str,
        out: Path,
        *,
        customer: str | None = None,
        data: Payload | None = None,
    ) -> Preview:
        """`preview`: a file's email or notice, rendered into `out`."""
        from commsync.api import preview

        return preview.preview(self.ctx, file, out, customer=customer, data=self._payload(data))

    def test_send(self, slug: str, to: str, data: Payload | None = None) -> str:
        """`test-send`: one system email, sent now; returns where it went."""
        from commsync.api import preview

        return preview.test_send(self.ctx, slug, to, self._payload(data))

    def _payload(self, data: Payload | None) -> JsonObject | None:
        from commsync.api.payloads import payload_of

        return None if data is None else payload_of(data, self.ctx.settings().limits)

    # -- the store -----------------------------------------------------------------------------

    def status(self) -> StatusReport:
        """`status`: sends, notices, system emails, recent applies, the lock."""
        from commsync.api import operations

        return operations.status(self.ctx)

    def queue(self, limit: int = 100) -> QueueListing:
        """`queue`: what waits to be sent, the soonest due first."""
        from commsync.api import operations

        return operations.queue(self.ctx, limit)

    def cancel_queued(
        self,
        ids: Sequence[int] = (),
        email: str | None = None,
        event_key: str | None = None,
        broadcast: str | None = None,
    ) -> Cancelled:
        """`queue cancel`: queued system-email messages matching every criterion given are
        cancelled, never sent; or (`broadcast`) one email broadcast is stopped for good."""
        from commsync.api import operations

        return operations.cancel_queued(self.ctx, ids, email, event_key, broadcast)

    def failed_recipients(self, broadcast_id: str) -> list[FailedRecipient]:
        """`status --failed`: the recipients of a broadcast whose delivery failed."""
        from commsync.api import operations

        return operations.failed_recipients(self.ctx, broadcast_id)

    def unlock(self, lock_id: str) -> LockHolder:
        """`unlock`: remove an apply lock left by an apply that is gone."""
        from commsync.api import operations

        return operations.unlock(self.ctx, lock_id)

    def issue_token(self, customer: str, ttl: str) -> IssuedToken:
        """`token`: a customer's feed token, valid for `ttl` (30d, 12h, 90m)."""
        from commsync.api import operations

        return operations.issue_token(self.ctx, customer, ttl)

    def rotate_key(self) -> None:
        """`rotate-key`: a new signing key; every customer token stops working."""
        from commsync.api import operations

        operations.rotate_key(self.ctx)

    def write_schemas(self, out: Path) -> list[Path]:
        """`schema --out DIR`: the installed JSON Schemas, for editors and checkers offline."""
        from commsync.repo.schemas import write_schemas

        return write_schemas(out)

    def suppressions(self, limit: int = 100) -> SuppressionList:
        """`suppressions list`: how many addresses are suppressed, the newest first."""
        from commsync.api import suppressions

        return suppressions.listing(self.ctx, limit)

    def suppress(
        self, addresses: Sequence[str], reason: str, scope: str | None = None
    ) -> Suppressed:
        """`suppressions add`: record addresses (all or none)."""
        from commsync.api import suppressions

        return suppressions.add(self.ctx, addresses, reason, scope, "commsync suppressions add")

    def import_suppressions(self, file: Path, display: str) -> Suppressed:
        """`suppressions import`: a CSV/JSONL file of addresses, all rows or none."""
        from commsync.api import suppressions

        return suppressions.import_file(self.ctx, file, display)

    def unsuppress(self, addresses: Sequence[str]) -> int:
        """`suppressions remove`: these addresses get email again (all or none)."""
        from commsync.api import suppressions

        return suppressions.remove(self.ctx, addresses)

    def import_records(
        self,
        kind: RecordKind,
        file: Path,
        display: str,
        options: ImportOptions | None = None,
    ) -> ImportCounts:
        """`customers|products|memberships import [--sync]`: a CSV/JSONL file, all rows or none."""
        from commsync.api import platform

        if options is None:
            return platform.import_records(self.ctx, kind, file, display)
        return platform.import_records(self.ctx, kind, file, display, options)

    # -- events and delivery -------------------------------------------------------------------

    def _event_service(self) -> EventService:
        from commsync.events.service import EventService

        if self._events is None:
            loaded, settings = self.ctx.usable()
            self._events = EventService(
                self.ctx.store(settings), settings, loaded.catalog, loaded.layout
            )
        return self._events

    def fire_event(
        self,
        event_type: str,
        payload: Payload,
        key: str | None = None,
        *,
        caller: Caller = OPERATOR,
    ) -> EventResult:
        """`event` and `POST /v1/events`: check the payload, queue the event's system emails."""
        from commsync.api.payloads import payload_of

        require_admin(caller, self._api_key())
        data = payload_of(payload, self.ctx.settings().limits)
        return self._event_service().fire(event_type, data, key)

    def _worker_for(self, on_round: RoundHook | None = None) -> Worker:
        from commsync.delivery.broadcast import WorkerBroadcasts
        from commsync.delivery.worker import Worker
        from commsync.events.recheck import Recheck

        store, settings = self.ctx.store(), self.ctx.settings()
        recheck = Recheck(store, settings, self._factories)
        broadcasts = WorkerBroadcasts(store, settings, lambda: self._event_service().layout)
        return Worker(
            store,
            settings,
            self.project.env,
            on_round=on_round,
            recheck=recheck,
            broadcasts=broadcasts,
        )

    def _factories(self) -> SystemEmailFactories:
        """The compiled system emails, for messages rendered again when they come due."""
        from commsync.render.message import RenderError

        try:
            return self._event_service().factories
        except CommsyncError as exc:  # the repository does not load: that message fails, said why
            raise RenderError(
                f"cannot render it again with the email's new version: {exc}"
            ) from exc

    def deliver(
        self,
        *,
        loop: bool,
        stop: threading.Event | None = None,
        poll: float = 1.0,
        on_round: RoundHook | None = None,
    ) -> DeliveryReport:
        """`deliver`: send what is due now, or keep sending until `stop`; the report says what
        the queue still holds."""
        report = self._worker_for(on_round).run_blocking(loop=loop, stop=stop, poll=poll)
        report.queue = self.ctx.store().queue_state(datetime.now(UTC))
        return report

    # -- serving dashboards and the platform (commsync serve) ----------------------------------

    def start_serving(self, *, deliver: bool, key_ttl: float = 10.0) -> None:
        """Ready for requests: notices compiled, events prepared, the worker in the background."""
        from commsync.api.dashboards import DashboardService

        self._dashboards = DashboardService(self.ctx.store(), self.ctx.settings(), key_ttl)
        self._dashboards.feed.warm()
        self._event_service()
        if deliver:
            worker = self._worker = self._worker_for()
            worker.starting()
            self._thread = threading.Thread(
                target=lambda: worker.run_blocking(loop=True, stop=self._stop),
                name="commsync-deliver",
                daemon=True,  # close() joins it; a daemon only so a stuck one cannot pin the exit
            )
            self._thread.start()

    @property
    def feed(self) -> Feed:
        """The notices feed and its compiled notices (warmed by `start_serving`)."""
        return self._dashboard().feed

    def _dashboard(self) -> DashboardService:
        if self._dashboards is None:  # imported here: the CLI's commands never need it
            from commsync.api.dashboards import DashboardService

            self._dashboards = DashboardService(self.ctx.store(), self.ctx.settings())
        return self._dashboards

    def _api_key(self) -> str | None:
        return self.project.env.get("COMMSYNC_API_KEY") or None

    def authorize_admin(self, caller: Caller) -> Caller:
        """The caller, if it holds the admin key (Unauthorized otherwise): HTTP checks this
        before it reads a platform request's body, so an unauthenticated client learns nothing
        from validation errors."""
        require_admin(caller, self._api_key())
        return caller

    def customer_feed(
        self, customer_id: str, caller: Caller, *, recheck: bool = True
    ) -> FeedAnswer:
        """`GET /v1/customers/{id}/notices`: the feed's hot path, as the response body
        (`recheck`: see `DashboardService.feed_answer`)."""
        return self._dashboard().feed_answer(customer_id, caller, recheck=recheck)

    def dismiss_notice(self, customer_id: str, notice_id: str, caller: Caller) -> None:
        """`POST …/notices/{notice}/dismiss`."""
        self._dashboard().dismiss(customer_id, notice_id, caller)

    def unsubscribe_page(self, token: str) -> Page:
        """`GET /v1/unsubscribe/{token}`: a page that asks."""
        return self._dashboard().unsubscribe_page(token)

    def unsubscribe(self, token: str, *, one_click: bool) -> Page:
        """`POST /v1/unsubscribe/{token}`: unsubscribe from broadcasts."""
        return self._dashboard().unsubscribe(token, one_click)

    def widget_script(self) -> str:
        """`GET /widget.js`: the dashboard widget."""
        from commsync.api.dashboards import widget_script

        return widget_script()

    def put_customer(
        self, customer_id: str, fields: Mapping[str, object], caller: Caller
    ) -> Upserted:
        """`PUT /v1/customers/{id}`."""
        from commsync.api import platform

        require_admin(caller, self._api_key())
        return platform.put_customer(self.ctx.store(), customer_id, fields)

    def put_product(self, slug: str, name: str, caller: Caller) -> Upserted:
        """`PUT /v1/products/{slug}`."""
        from commsync.api import platform

        require_admin(caller, self._api_key())
        return platform.put_product(self.ctx.store(), slug, name)

    def put_memberships(
        self, customer_id: str, rows: Sequence[Mapping[str, object]], caller: Caller
    ) -> int:
        """`PUT /v1/customers/{id}/memberships`: the customer's memberships become `rows`."""
        from commsync.api import platform

        require_admin(caller, self._api_key())
        statuses = self.ctx.settings().membership_statuses
        return platform.put_memberships(self.ctx.store(), customer_id, rows, statuses)

    def delete_customer(self, customer_id: str, caller: Caller) -> None:
        """`DELETE /v1/customers/{id}`: marked deleted; their memberships end."""
        from commsync.api import platform

        require_admin(caller, self._api_key())
        platform.delete_customer(self.ctx.store(), customer_id)

    def delete_product(self, slug: str, caller: Caller) -> None:
        """`DELETE /v1/products/{slug}`: gone with its memberships, unless a broadcast targets it."""
        from commsync.api import platform

        require_admin(caller, self._api_key())
        platform.delete_product(self.ctx.store(), slug)

    def event_types(self, caller: Caller) -> list[EventDef]:
        """`GET /v1/event-types`: the events commsync knows, with their payload keys (a
        platform's bridge forwards these and no others)."""
        require_admin(caller, self._api_key())
        return sorted(self._event_service().catalog.events.values(), key=lambda e: e.slug)

    def customer_token(self, customer_id: str, ttl: str, caller: Caller) -> IssuedToken:
        """`POST /v1/customers/{id}/token`: a feed token for one customer, for a platform that
        fetches the feed server-side (the WordPress bridge); `ttl` as for `commsync token`."""
        from commsync.api import operations
        from commsync.auth import parse_ttl
        from commsync.errors import InvalidInput

        require_admin(caller, self._api_key())
        try:
            parse_ttl(ttl)
        except CommsyncError as exc:
            raise InvalidInput([exc.message.replace("--ttl", "ttl")]) from None
        return operations.issue_token(self.ctx, customer_id, ttl, by_id=True)

    def health(self) -> Health:
        """`GET /healthz`: the store takes writes, the background worker keeps up."""
        from commsync.api import operations

        return operations.health(self.ctx, self._worker.health if self._worker else None)

    def delivery_counts(self) -> DeliveryCounts:
        """`GET /metrics`: the store's counts (events, messages, queue depth)."""
        from commsync.api import operations

        return operations.delivery_counts(self.ctx, self._worker.health if self._worker else None)
