"""Use cases of customers and their dashboards: the notices feed, dismissing, unsubscribing.

A `Dashboards` object lives as long as `commsync serve`: it keeps the compiled notices and the
store's signing key (re-read every `key_ttl` seconds, so `commsync rotate-key` takes effect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Protocol

from commsync.api.access import Caller, require_claims, require_customer, token_of
from commsync.api.feed import Feed, FeedAnswer, FeedResponses
from commsync.auth import TokenError
from commsync.config.settings import Settings
from commsync.errors import Conflict, NotFound
from commsync.model import SuppressionScope
from commsync.render import pages
from commsync.store.roles import Control, PlatformData
from commsync.store.roles import Dashboards as DashboardStore

_VERIFIED_TOKENS = 100_000  # tokens remembered as checked; past that the memory starts over


class _Store(DashboardStore, PlatformData, Control, Protocol):
    """The store roles dashboards use."""


@dataclass(frozen=True, slots=True)
class Page:
    """An HTML page for a person (the unsubscribe pages) and its status code."""

    html: str
    status: int = 200


@cache
def widget_script() -> str:
    """The dashboard widget (`/widget.js`): it shows notices as `render/notice.py` previews them."""
    return files("commsync.render").joinpath("widget.js").read_text(encoding="utf-8")


@dataclass
class DashboardService:
    store: _Store
    settings: Settings
    key_ttl: float = 10.0  # seconds a serve process trusts its copy of the signing key
    feed: Feed = field(init=False)
    _key: tuple[bytes, float] | None = None

    responses: FeedResponses = field(init=False)
    _verified: dict[str, tuple[str, int]] = field(init=False, default_factory=dict)
    _verified_key: bytes = b""

    def __post_init__(self) -> None:
        self.feed = Feed(self.store, self.settings)
        self.responses = FeedResponses(self.settings.limits.feed_cache_bytes)

    def key(self) -> bytes:
        """The store's signing key, re-read every `key_ttl` seconds (`commsync rotate-key`)."""
        if self._key is None or time.monotonic() - self._key[1] >= self.key_ttl:
            self._key = (self.store.signing_key(), time.monotonic())
        return self._key[0]

    def feed_answer(self, customer_id: str, caller: Caller, *, recheck: bool = True) -> FeedAnswer:
        """The customer's feed as a response body, kept until their feed changes: the hot path
        of every dashboard page view (a kept answer costs a remembered token check and the
        store's cheap "anything changed?").

        `recheck=False`: the caller vouches that the store was asked what changed after this
        request arrived (serve asks once per turn of its event loop for all requests that
        arrived before it), so a kept answer is still current."""
        now = time.time()
        self._require_customer(caller, customer_id, now)
        responses = self.responses
        generation = responses.generation
        if recheck:
            generation, everyone = responses.sync(self.store)
            if everyone:
                self.feed.reload()  # the notices themselves may have changed
        kept = responses.get(customer_id, now)
        if kept is not None:
            return kept
        answer, until = self.feed.answer(customer_id, datetime.fromtimestamp(now, UTC))
        if answer is None:
            raise NotFound("no such customer")
        responses.put(customer_id, answer, until, generation)
        return answer

    def _require_customer(self, caller: Caller, customer_id: str, now: float) -> None:
        """`require_customer`, remembering tokens whose signature was checked under the current
        key (their expiry is checked every time; a new key forgets them all)."""
        if caller.local:
            return
        key = self.key()
        if key != self._verified_key:
            self._verified, self._verified_key = {}, key
        header = caller.authorization or ""
        claims = self._verified.get(header)
        if claims is None:
            claims = token_of(caller, key, datetime.fromtimestamp(now, UTC))
            if len(self._verified) >= _VERIFIED_TOKENS:
                self._verified.clear()
            self._verified[header] = claims
        elif claims[1] <= int(now):
            raise TokenError("expired token")
        require_claims(claims, customer_id)

    def dismiss(self, customer_id: str, notice_id: str, caller: Caller) -> None:
        """Dismissing twice is dismissing once; a notice that is not dismissible is a conflict."""
        now = datetime.now(UTC)
        require_customer(caller, self.key(), customer_id, now)
        customer = self.store.customer(customer_id)
        if customer is None:
            raise NotFound("no such customer")
        dismissible = self.feed.dismissible(customer, notice_id, now)
        if dismissible is None:
            if self.store.dismissed(notice_id, customer.id):
                return
            raise NotFound("no such notice for this customer")
        if not dismissible:
            raise Conflict("this notice cannot be dismissed")
        self.store.dismiss(notice_id, customer.id, now)

    def unsubscribe_page(self, token: str) -> Page:
        """The page an unsubscribe link opens: it asks, it never unsubscribes."""
        address = self.store.address_for_token(token)
        if address is None:
            return Page(pages.unknown(self.settings), 404)
        return Page(pages.confirm(self.settings, address, f"/v1/unsubscribe/{token}"))

    def unsubscribe(self, token: str, one_click: bool) -> Page:
        """Stop broadcasts to the link's address (RFC 8058 one-click, or the page's button)."""
        address = self.store.address_for_token(token)
        if address is None:
            return Page(pages.unknown(self.settings), 404)
        source = "one-click" if one_click else "unsubscribe page"
        now = datetime.now(UTC)
        self.store.suppress(address, SuppressionScope.MARKETING, "unsubscribe", source, now)
        return Page(pages.done(self.settings))
