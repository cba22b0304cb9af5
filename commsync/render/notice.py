"""A notice as dashboards show it: personalised, converted to HTML, and sanitised.

Operators write notices, but what reaches a customer's dashboard is never trusted as HTML: after
rendering, nh3 keeps only formatting tags, safe link schemes and no attributes but href/title.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

import nh3

from commsync.model import BroadcastSpec, Format, MessageType
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.render import pieces
from commsync.render.markup import escape_markdown, to_html
from commsync.render.sandbox import environment, simple_placeholders

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "hr", "i", "li",
    "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
URL_SCHEMES = {"http", "https", "mailto"}


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    heading: str  # plain text
    html: str  # sanitised fragment
    message_type: MessageType
    dismissible: bool


def sanitise(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def render_notice(
    spec: BroadcastSpec, values: Mapping[str, str], limits: Limits = DEFAULT_LIMITS
) -> RenderedNotice:
    """The notice for one customer. Values are literal (no markdown or HTML from customer data)."""
    env = environment(spec.format == Format.HTML, limits)
    heading = env.from_string(spec.subject).render(values) if "{" in spec.subject else spec.subject
    if spec.format == Format.MARKDOWN:
        source = (
            environment(False, limits)
            .from_string(spec.content)
            .render({k: escape_markdown(v) for k, v in values.items()})
        )
    else:
        source = env.from_string(spec.content).render(values)
    return RenderedNotice(
        heading, sanitise(to_html(source, spec.format)), spec.message_type, spec.dismissible
    )


class CompiledNotice:
    """A notice prepared once for many customers.

    When the notice only substitutes `{{ name }}` placeholders and none of them lands inside a
    tag (an href, say), it is rendered and sanitised once with sentinel tokens, and each customer
    costs a few string joins with HTML-escaped values. Otherwise each customer's notice is rendered
    and sanitised in full.
    """

    def __init__(self, spec: BroadcastSpec, limits: Limits = DEFAULT_LIMITS) -> None:
        self.spec = spec
        self.limits = limits
        self.fast = False
        sources = (spec.subject, spec.content)
        if all(simple_placeholders(s) is not None for s in sources):
            names = sorted({n for s in sources for n, _ in simple_placeholders(s) or []})
            token = pieces.sentinels(names)
            slots = {tok: i for i, tok in enumerate(token.values())}
            body = sanitise(to_html(pieces.tokenise(spec.content, token), spec.format))
            if not any(re.search(rf"<[^>]*{tok}", body) for tok in token.values()):
                self.names = names
                self.heading = pieces.split(pieces.tokenise(spec.subject, token), slots)
                self.body = pieces.split(body, slots)
                self.fast = True

    def render(self, values: Mapping[str, str]) -> RenderedNotice:
        if not self.fast:
            return render_notice(self.spec, values, self.limits)
        raw = [values.get(name, "") for name in self.names]
        escaped = [html.escape(v, quote=True) for v in raw]
        return RenderedNotice(
            pieces.join(self.heading, raw),
            pieces.join(self.body, escaped),
            self.spec.message_type,
            self.spec.dismissible,
        )


# The dashboard widget's colours (http/widget.js): background and accent per message_type.
NOTICE_COLOURS = {
    "info": ("#eff6ff", "#1d4ed8"),
    "success": ("#f0fdf4", "#15803d"),
    "warning": ("#fff7ed", "#c2410c"),
    "error": ("#fef2f2", "#b91c1c"),
}


def notice_fragment(notice: RenderedNotice) -> str:
    """The notice as the widget shows it: the same markup and inline styles (for previews)."""
    background, accent = NOTICE_COLOURS.get(notice.message_type, NOTICE_COLOURS["info"])
    role = "alert" if notice.message_type == "error" else "status"
    close = (
        '<button type="button" aria-label="Dismiss" style="position:absolute;top:8px;right:8px;'
        f'border:0;background:none;font-size:20px;line-height:1;color:{accent}">×</button>'
        if notice.dismissible
        else ""
    )
    return (
        f'<div role="{role}" data-type="{notice.message_type}" style="position:relative;'
        f"margin:0 0 12px;padding:12px 40px 12px 16px;border-left:4px solid {accent};"
        f"background:{background};color:#1f2933;border-radius:4px;"
        'font:14px/1.5 -apple-system,Segoe UI,Roboto,sans-serif">'
        f'<strong style="display:block;margin-bottom:4px;color:{accent}">'
        f"{html.escape(notice.heading)}</strong><div>{notice.html}</div>{close}</div>"
    )
