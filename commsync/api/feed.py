"""The notices feed: which notices a customer sees right now, rendered for them."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
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
    ) -> tuple[CustomerRecord | None, list[NoticeJson], datetime | None]:
        """The customer (None: unknown), their notices, and when that list next changes by
        itself (a notice's window opens or closes; None: not by time): the feed's hot path."""
        customer, wanted = self.store.feed_rows(customer_id, self.settings.membership_statuses)
        if customer is None:
            return None, [], None
        return customer, *self._render(customer, wanted, now)

    def notices(self, customer: CustomerRecord, now: datetime) -> list[NoticeJson]:
        """Active, targeted, not dismissed, inside their window; HTML sanitised."""
        wanted = self.store.notices_for(customer.id, self.settings.membership_statuses)
        return self._render(customer, wanted, now)[0]

    def _render(
        self, customer: CustomerRecord, wanted: list[tuple[str, str]], now: datetime
    ) -> tuple[list[NoticeJson], datetime | None]:
        compiled = self._compiled(wanted)
        values = customer_values(customer, self.settings.network_context)
        out: list[NoticeJson] = []
        until: datetime | None = None
        for notice_id, _ in wanted:
            notice = compiled.get(notice_id)
            if notice is None:
                continue
            spec = notice.spec
            for edge in (spec.starts_at, spec.expires_at):
                if edge is not None and edge > now and (until is None or edge < until):
                    until = edge
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
        return out, until

    def dismissible(self, customer: CustomerRecord, notice_id: str, now: datetime) -> bool | None:
        """None: not a notice this customer sees; else whether it can be dismissed."""
        for notice in self.notices(customer, now):
            if notice["id"] == notice_id:
                return notice["dismissible"]
        return None


@dataclass(frozen=True, slots=True)
class FeedAnswer:
    """A customer's feed as the response carries it: the JSON body and its entity tag."""

    body: bytes
    etag: bytes  # quoted, as the ETag header carries it

    @classmethod
    def of(cls, customer_id: str, notices: list[NoticeJson]) -> FeedAnswer:
        body = json.dumps({"customer": customer_id, "notices": notices}, separators=(",", ":"))
        data = body.encode()
        return cls(data, b'"' + hashlib.blake2b(data, digest_size=12).hexdigest().encode() + b'"')


class FeedResponses:
    """Each customer's last feed response, kept until their feed changes.

    The store numbers every write that changes what feeds show (the feed generation) and says
    whose feeds it changed (`Dashboards.feed_changes`); `sync` asks before every answer and drops
    exactly those, so a response is never served after the write that changed it committed —
    also a write by another process (apply, an import, another `serve` worker). A notice whose
    window opens or closes ends the kept response at that moment. Kept responses are bounded by
    `limits.feed_cache_bytes`, least recently used first out.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[str, tuple[FeedAnswer, float]] = OrderedDict()
        self.size = 0
        self.generation: int | None = None
        self.lock = Lock()

    def sync(self, store: Dashboards) -> int | None:
        """Drop what changed since the last look; the generation the kept responses are now of."""
        generation, changed = store.feed_changes(self.generation)
        with self.lock:
            if changed is None:
                self.entries.clear()
                self.size = 0
            else:
                for customer_id in changed:
                    self._drop(customer_id)
            self.generation = generation
        return generation

    def get(self, customer_id: str, now: float) -> FeedAnswer | None:
        with self.lock:
            kept = self.entries.get(customer_id)
            if kept is None:
                return None
            if kept[1] <= now:  # a window opened or closed since
                self._drop(customer_id)
                return None
            self.entries.move_to_end(customer_id)
            return kept[0]

    def put(
        self, customer_id: str, answer: FeedAnswer, until: datetime | None, generation: int | None
    ) -> None:
        """Keep `answer`, read after `sync` returned `generation` (not if the cache moved on
        since: the answer may predate a change already dropped)."""
        cost = len(answer.body) + 200  # the key, the tuple and the answer object, roughly
        if cost > self.budget:
            return
        with self.lock:
            if generation is None or generation != self.generation:
                return
            self._drop(customer_id)
            self.entries[customer_id] = (answer, until.timestamp() if until else math.inf)
            self.size += cost
            while self.size > self.budget:
                _, (old, _) = self.entries.popitem(last=False)
                self.size -= len(old.body) + 200

    def _drop(self, customer_id: str) -> None:
        kept = self.entries.pop(customer_id, None)
        if kept is not None:
            self.size -= len(kept[0].body) + 200
