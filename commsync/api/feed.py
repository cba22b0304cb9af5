"""The notices feed: which notices a customer sees right now, rendered for them.

`Feed` builds a customer's feed from an index of the active notices (compiled once) and the
customer's own data; `FeedResponses` keeps each customer's built response until the store says
their feed changed; `FeedAnswer` is a response body with its entity tag.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from threading import Lock
from typing import TypedDict

from commsync.config.settings import Settings
from commsync.model import CustomerRecord
from commsync.render.notice import CompiledNotice
from commsync.render.values import customer_values
from commsync.store.roles import Dashboards

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


class _Active:
    """One active notice in the feed's index: its order of severity, whether it has a window,
    and its JSON object as a `str.format_map` template when it only substitutes placeholders (`CompiledNotice.fast`),
    so a customer's copy costs one C-level call: static text JSON-escaped once, the values
    JSON-escaped once per customer (`r_NAME` as text, `e_NAME` HTML-escaped). JSON escaping
    commutes with concatenation, so the result is exactly `json.dumps` of `as_json`."""

    __slots__ = ("compiled", "id", "severity", "template", "timed")

    def __init__(self, notice_id: str, compiled: CompiledNotice) -> None:
        spec = compiled.spec
        self.id, self.compiled = notice_id, compiled
        self.severity = _SEVERITY.get(spec.message_type, len(_SEVERITY))
        self.timed = spec.starts_at is not None or spec.expires_at is not None
        self.template: str | None = None
        if compiled.fast:
            self.template = _template(notice_id, compiled)

    def as_json(self, values: Mapping[str, str]) -> NoticeJson:
        rendered = self.compiled.render(values)
        expires = self.compiled.spec.expires_at
        return {
            "id": self.id,
            "heading": rendered.heading,
            "html": rendered.html,
            "message_type": rendered.message_type,
            "dismissible": rendered.dismissible,
            "expires_at": expires.isoformat() if expires else None,
        }

    def json_text(self, values: Mapping[str, str], fields: Mapping[str, str]) -> str:
        if self.template is not None:
            return self.template.format_map(fields)
        return json.dumps(self.as_json(values), separators=(",", ":"))


def _json_chars(text: str) -> str:
    """`text` as the inside of a JSON string, exactly as `json.dumps` writes it."""
    return encode_basestring_ascii(text)[1:-1]


def _template(notice_id: str, compiled: CompiledNotice) -> str:
    def static(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    def pieces(parts: Sequence[str | int], prefix: str) -> str:
        return "".join(
            static(_json_chars(p)) if isinstance(p, str) else f"{{{prefix}_{compiled.names[p]}}}"
            for p in parts
        )

    spec = compiled.spec
    expires = json.dumps(spec.expires_at.isoformat() if spec.expires_at else None)
    return (
        static(f'{{"id":{json.dumps(notice_id)},"heading":"')
        + pieces(compiled.heading, "r")
        + static('","html":"')
        + pieces(compiled.body, "e")
        + static(
            f'","message_type":{json.dumps(str(spec.message_type))},'
            f'"dismissible":{json.dumps(spec.dismissible)},"expires_at":{expires}}}'
        )
    )


def json_fields(values: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """A customer's values as `_Active` templates take them."""
    fields = {}
    for name in names:
        value = values.get(name, "")
        fields[f"r_{name}"] = _json_chars(value)
        fields[f"e_{name}"] = _json_chars(html.escape(value, quote=True))
    return fields


class _Index:
    """The active notices, newest first, and who each targets: everyone, listed customers,
    holders of a product (positions in `notices`, so a customer's are found by lookups and
    kept in order by sorting positions)."""

    def __init__(self, notices: list[_Active]) -> None:
        self.notices = notices
        self.everyone: list[int] = []
        self.by_customer: dict[str, list[int]] = {}
        self.by_product: dict[str, list[int]] = {}
        for n, notice in enumerate(notices):
            targets = notice.compiled.spec.targets
            if targets.all:
                self.everyone.append(n)
                continue
            for customer_id in targets.customers:
                self.by_customer.setdefault(customer_id, []).append(n)
            for product in targets.products:
                self.by_product.setdefault(product, []).append(n)
        self.names = frozenset(n for a in notices if a.compiled.fast for n in a.compiled.names)

    def targeting(self, customer_id: str, products: Iterable[str]) -> list[_Active]:
        """The notices that target this customer, newest first."""
        found = set(self.everyone)
        found.update(self.by_customer.get(customer_id, ()))
        for product in products:
            found.update(self.by_product.get(product, ()))
        notices = self.notices
        return [notices[n] for n in sorted(found)]


class Feed:
    """Notices for customers, from an index of the active notices compiled once.

    The index is loaded when first needed and again after a write that may have changed any
    notice (`reload`, which the response cache calls when the store says every feed changed);
    a customer's own data (record, products held, dismissals) is read for each feed built.
    Compiled notices are kept by (id, spec hash), so a reload compiles only what changed.
    """

    def __init__(self, store: Dashboards, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.cache: OrderedDict[tuple[str, str], CompiledNotice] = OrderedDict()
        self.lock = Lock()
        self._index: _Index | None = None
        self._reloads = 0  # how many times the index was forgotten

    def reload(self) -> None:
        """Forget the index of active notices: the next feed loads it again."""
        with self.lock:
            self._index = None
            self._reloads += 1

    def index(self) -> _Index:
        """The active notices, newest first, and whom they target. An index whose load began
        before a `reload` is used by its caller but not kept: it may predate the change."""
        with self.lock:
            if self._index is not None:
                return self._index
            reloads = self._reloads
        active = self.store.active_notices()
        limits = self.settings.limits
        with self.lock:
            kept: OrderedDict[tuple[str, str], CompiledNotice] = OrderedDict()
            notices = []
            for notice_id, spec in active:
                key = (notice_id, spec.spec_hash())
                compiled = self.cache.get(key) or CompiledNotice(spec, limits)
                kept[key] = compiled
                notices.append(_Active(notice_id, compiled))
            self.cache = kept  # only the active ones: a notice no longer active is forgotten
            index = _Index(notices)
            if reloads == self._reloads:
                self._index = index
            return index

    def warm(self) -> int:
        """Compile every active notice now, so the first dashboards after a start do not wait."""
        return len(self.index().notices)

    def answer(self, customer_id: str, now: datetime) -> tuple[FeedAnswer | None, datetime | None]:
        """The customer's feed as the response carries it (None: no such customer), and when
        it next changes by itself (a notice's window opens or closes; None: not by time)."""
        found = self.store.feed_customer(customer_id, self.settings.membership_statuses)
        if found is None:
            return None, None
        customer, products, dismissed = found
        index = self.index()
        values = customer_values(customer, self.settings.network_context)
        fields = json_fields(values, index.names)
        shown: list[tuple[int, str]] = []
        until: datetime | None = None
        for notice in index.targeting(customer.id, products):
            if notice.id in dismissed:
                continue
            if notice.timed:
                spec = notice.compiled.spec
                for edge in (spec.starts_at, spec.expires_at):
                    if edge is not None and edge > now and (until is None or edge < until):
                        until = edge
                if (spec.starts_at and spec.starts_at > now) or (
                    spec.expires_at and spec.expires_at <= now
                ):
                    continue
            try:
                text = notice.json_text(values, fields)
            except Exception:  # this customer's values break the template: the others still show
                log.exception(
                    "notice %s cannot be rendered for customer %s", notice.id, customer.id
                )
                continue
            shown.append((notice.severity, text))
        shown.sort(key=lambda n: n[0])  # stable: newest first within one severity
        body = (
            f'{{"customer":{json.dumps(customer.id)},"notices":[{",".join(t for _, t in shown)}]}}'
        )
        return FeedAnswer.of_body(body.encode()), until

    def notices(self, customer: CustomerRecord, now: datetime) -> list[NoticeJson]:
        """Active, targeted, not dismissed, inside their window; HTML sanitised (what the
        customer sees now, read from the store's own query: dismissals check against it)."""
        wanted = dict(self.store.notices_for(customer.id, self.settings.membership_statuses))
        index = self.index().notices
        known = {(n.id, n.compiled.spec.spec_hash()) for n in index}
        if not known.issuperset(wanted.items()):  # applied since the index was loaded
            self.reload()
            index = self.index().notices
        values = customer_values(customer, self.settings.network_context)
        out: list[NoticeJson] = []
        for notice in index:
            spec = notice.compiled.spec
            if notice.id not in wanted or wanted[notice.id] != spec.spec_hash():
                continue
            if (spec.starts_at and spec.starts_at > now) or (
                spec.expires_at and spec.expires_at <= now
            ):
                continue
            try:
                out.append(notice.as_json(values))
            except Exception:
                log.exception(
                    "notice %s cannot be rendered for customer %s", notice.id, customer.id
                )
        out.sort(key=lambda n: _SEVERITY.get(n["message_type"], len(_SEVERITY)))  # stable
        return out

    def dismissible(self, customer: CustomerRecord, notice_id: str, now: datetime) -> bool | None:
        """None: not a notice this customer sees; else whether it can be dismissed."""
        for notice in self.notices(customer, now):
            if notice["id"] == notice_id:
                return notice["dismissible"]
        return None


@dataclass(slots=True, eq=False)
class FeedAnswer:
    """A customer's feed as the response carries it: the JSON body and its entity tag (and
    whatever the HTTP face made of them once, kept with them: `wire`)."""

    body: bytes
    etag: bytes  # quoted, as the ETag header carries it
    wire: list[tuple[bytes, bytes]] | None = None

    @classmethod
    def of_body(cls, body: bytes) -> FeedAnswer:
        return cls(body, b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"')


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

    def sync(self, store: Dashboards) -> tuple[int, bool]:
        """Drop what changed since the last look: the generation the kept responses are now of,
        and whether every feed may have changed (notices applied, an import)."""
        generation, changed = store.feed_changes(self.generation)
        with self.lock:
            if changed is None:
                self.entries.clear()
                self.size = 0
            else:
                for customer_id in changed:
                    self._drop(customer_id)
            self.generation = generation
        return generation, changed is None

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
