"""The notices feed: which notices a customer sees right now, rendered for them."""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from threading import Lock
from typing import TypedDict

from commsync.config.settings import Settings
from commsync.model import CustomerRecord
from commsync.render.notice import CompiledNotice
from commsync.render.values import customer_values
from commsync.store.roles import Dashboards

_CACHE_SIZE = 10_000
log = logging.getLogger(__name__)


# The feed's order: the most severe first, and within one severity the newest first.
_SEVERITY = {"error": 0, "warning": 1, "info": 2, "success": 3}


class NoticeJson(TypedDict):
    """One notice as the feed returns it (and the widget shows it)."""

    id: str
    heading: str
    html: str
    message_type: str
    dismissible: bool
    expires_at: str | None


class Feed:
    """Notices for customers; compiled notices are cached by (id, spec hash) across requests."""

    def __init__(self, store: Dashboards, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.cache: OrderedDict[tuple[str, str], CompiledNotice] = OrderedDict()
        self.lock = Lock()

    def _compiled(self, wanted: list[tuple[str, str]]) -> dict[str, CompiledNotice]:
        found: dict[str, CompiledNotice] = {}
        missing = []
        with self.lock:
            for key in wanted:
                compiled = self.cache.get(key)
                if compiled is None:
                    missing.append(key[0])
                else:
                    self.cache.move_to_end(key)
                    found[key[0]] = compiled
        if missing:
            specs = self.store.notice_specs(missing)
            hashes = dict(wanted)
            with self.lock:
                for notice_id, spec in specs.items():
                    compiled = CompiledNotice(spec, self.settings.limits)
                    self.cache[(notice_id, hashes[notice_id])] = compiled
                    found[notice_id] = compiled
                while len(self.cache) > _CACHE_SIZE:
                    self.cache.popitem(last=False)
        return found

    def warm(self) -> int:
        """Compile every active notice now, so the first dashboards after a start do not wait."""
        active = self.store.active_notices()[:_CACHE_SIZE]
        limits = self.settings.limits
        compiled = {(i, spec.spec_hash()): CompiledNotice(spec, limits) for i, spec in active}
        with self.lock:
            self.cache.update(compiled)
        return len(compiled)

    def for_customer(
        self, customer_id: str, now: datetime
    ) -> tuple[CustomerRecord | None, list[NoticeJson]]:
        """The customer (None: unknown) and their notices: the feed's hot path."""
        customer, wanted = self.store.feed_rows(customer_id, self.settings.membership_statuses)
        if customer is None:
            return None, []
        return customer, self._render(customer, wanted, now)

    def notices(self, customer: CustomerRecord, now: datetime) -> list[NoticeJson]:
        """Active, targeted, not dismissed, inside their window; HTML sanitised."""
        wanted = self.store.notices_for(customer.id, self.settings.membership_statuses)
        return self._render(customer, wanted, now)

    def _render(
        self, customer: CustomerRecord, wanted: list[tuple[str, str]], now: datetime
    ) -> list[NoticeJson]:
        compiled = self._compiled(wanted)
        values = customer_values(customer, self.settings.network_context)
        out: list[NoticeJson] = []
        for notice_id, _ in wanted:
            notice = compiled.get(notice_id)
            if notice is None:
                continue
            spec = notice.spec
            if (spec.starts_at and spec.starts_at > now) or (
                spec.expires_at and spec.expires_at <= now
            ):
                continue
            try:
                rendered = notice.render(values)
            except Exception:  # this customer's values break the template: the others still show
                log.exception(
                    "notice %s cannot be rendered for customer %s", notice_id, customer.id
                )
                continue
            out.append(
                {
                    "id": notice_id,
                    "heading": rendered.heading,
                    "html": rendered.html,
                    "message_type": rendered.message_type,
                    "dismissible": rendered.dismissible,
                    "expires_at": spec.expires_at.isoformat() if spec.expires_at else None,
                }
            )
        out.sort(key=lambda n: _SEVERITY.get(n["message_type"], len(_SEVERITY)))  # stable
        return out

    def dismissible(self, customer: CustomerRecord, notice_id: str, now: datetime) -> bool | None:
        """None: not a notice this customer sees; else whether it can be dismissed."""
        for notice in self.notices(customer, now):
            if notice["id"] == notice_id:
                return notice["dismissible"]
        return None
