"""A notice as dashboards show it: personalised, converted to HTML, and sanitised.

Operators write notices, but what reaches a customer's dashboard is never trusted as HTML: after
rendering, nh3 keeps only formatting tags, safe link schemes and no attributes but href/title.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import nh3

from commsync.model import BroadcastSpec
from commsync.render.markup import escape_markdown, to_html
from commsync.render.sandbox import environment

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
    message_type: str
    dismissible: bool


def sanitise(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def render_notice(spec: BroadcastSpec, values: Mapping[str, str]) -> RenderedNotice:
    """The notice for one customer. Values are literal (no markdown or HTML from customer data)."""
    env = environment(autoescape=spec.format == "html")
    heading = env.from_string(spec.subject).render(values) if "{" in spec.subject else spec.subject
    if spec.format == "markdown":
        source = (
            environment()
            .from_string(spec.content)
            .render({k: escape_markdown(v) for k, v in values.items()})
        )
    else:
        source = env.from_string(spec.content).render(values)
    return RenderedNotice(
        heading, sanitise(to_html(source, spec.format)), spec.message_type, spec.dismissible
    )
