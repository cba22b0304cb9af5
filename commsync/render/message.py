"""Per-recipient email messages, built fast.

A template that only substitutes `{{ name }}` placeholders (the common case) is compiled once:
subject, markdown, layout and CSS inlining are rendered with sentinel tokens in place of the
placeholders and cut into pieces, so each recipient costs a few string joins, HTML escaping of
their values and C-level quoted-printable encoding. Templates with logic are rendered per
recipient in the sandbox. Either way the values are literal: a customer called `*Bob*` is not
turned into italics, and `<b>` in a name is escaped in the HTML part.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from functools import cache
from importlib.resources import files

import css_inline
from jinja2 import Template
from markupsafe import Markup

from commsync.model import Format, Style, Theme
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.model.mail import is_address
from commsync.render import pieces
from commsync.render.headers import CONTROL, mailbox, subject_header
from commsync.render.headers import RenderError as RenderError
from commsync.render.headers import encoded_words as encoded_words
from commsync.render.headers import header_value as header_value
from commsync.render.markup import escape_markdown, markdown_to_html, to_html, to_text
from commsync.render.sandbox import environment, simple_placeholders

UNSUBSCRIBE = "unsubscribe_url"
LAYOUT_NAMES = frozenset(
    {
        "subject",
        "content",
        "theme",
        "network_name",
        "network_url",
        UNSUBSCRIBE,
        "footer",
        "company_address",
    }
)
# What the layout is tried with when it is checked (repo/loader.py): one sample of each name.
LAYOUT_SAMPLE: tuple[tuple[str, object], ...] = tuple(
    sorted(
        {
            "subject": "A sample subject",
            "content": Markup("<p>Sample content.</p>"),
            "theme": Theme(footer="A footer", company_address="1 Sample Street"),
            "network_name": "Acme Sites",
            "network_url": "https://acme.example",
            UNSUBSCRIBE: "https://acme.example/unsubscribe/sample",
            "footer": Markup("<p>A footer</p>"),
            "company_address": "1 Sample Street",
        }.items()
    )
)
_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    """One send before personalisation."""

    subject: str
    content: str
    format: Format
    style: Style
    sender: str  # "Name <address>"
    reply_to: str | None
    unsubscribe: bool  # broadcasts carry List-Unsubscribe and an unsubscribe link
    id_key: str  # store + send identity; Message-IDs derive from it and the recipient


@dataclass(frozen=True, slots=True)
class Built:
    data: bytes
    message_id: str
    subject: str


@cache
def default_layout() -> str:
    return files("commsync.render").joinpath("layout.html").read_text(encoding="utf-8")


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def date_header() -> bytes:
    """A Date header line for a message built earlier and sent now."""
    return f"Date: {formatdate(usegmt=True)}\r\n".encode()


class _Dates:
    """RFC 5322 dates, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second, self.text = second, formatdate(second, usegmt=True)
        return self.text


class MessageFactory:
    """Builds each recipient's message for one send."""

    def __init__(
        self,
        template: EmailTemplate,
        *,
        theme: Theme,
        static: Mapping[str, str],
        layout: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.template = template
        self.theme = theme
        self.static = dict(static)
        self.limits = limits
        self.layout = environment(True, limits).from_string(layout or default_layout())
        self.domain = template.sender.rsplit("@", 1)[-1].rstrip(">").strip()
        self.dates = _Dates()
        self.boundary = "=_commsync_" + hashlib.sha256(template.id_key.encode()).hexdigest()[:24]
        self.subject_seen: str | None = None  # the last subject checked, and its header
        self.subject_line = ""
        # the send's own headers, checked once (None: checked per message, and refused)
        self.from_header = None if CONTROL.search(template.sender) else f"From: {template.sender}"
        reply_to = template.reply_to or ""
        self.reply_to_header = None if CONTROL.search(reply_to) else f"Reply-To: {reply_to}"
        simple = all(
            simple_placeholders(s) is not None for s in (template.subject, template.content)
        )
        try:
            self._compile_fast() if simple else self._compile_slow()
        except RenderError:
            raise
        except Exception as exc:  # the layout or a template failing as it is compiled
            raise RenderError(f"template failed: {type(exc).__name__}: {exc}") from exc

    # -- compiling --------------------------------------------------------------------------

    def _layout_vars(
        self, subject: str, content: str, unsubscribe: str | None
    ) -> dict[str, object]:
        footer = Markup(markdown_to_html(self.theme.footer)) if self.theme.footer else None
        return {
            "subject": subject,
            "content": Markup(content),
            "theme": self.theme,
            "network_name": self.static.get("network_name", ""),
            "network_url": self.static.get("network_url", ""),
            UNSUBSCRIBE: unsubscribe if self.template.unsubscribe else None,
            "footer": footer,
            "company_address": self.theme.company_address,
        }

    def _text_footer(self, unsubscribe: str | None) -> str:
        lines = [
            "",
            "--",
            f"{self.static.get('network_name', '')} · {self.static.get('network_url', '')}",
        ]
        if self.template.unsubscribe and unsubscribe:
            lines.append(f"Unsubscribe: {unsubscribe}")
        return "\n".join(lines) + "\n"

    def _compile_fast(self) -> None:
        t = self.template
        names = sorted(
            {n for s in (t.subject, t.content) for n, _ in simple_placeholders(s) or []}
            | ({UNSUBSCRIBE} if t.unsubscribe else set())
        )
        token = pieces.sentinels(names)
        self.slots = names
        slot_of = {tok: i for i, tok in enumerate(token.values())}
        subject_tok = pieces.tokenise(t.subject, token)
        content_tok = pieces.tokenise(t.content, token)
        body = to_html(content_tok, t.format)
        link = token.get(UNSUBSCRIBE)
        doc = self.layout.render(self._layout_vars(subject_tok, body, link))
        self.subject_pieces = pieces.split(subject_tok, slot_of)
        self.html_pieces = pieces.split(_INLINER.inline(doc), slot_of)
        self.text_pieces = pieces.split(
            to_text(content_tok, t.format) + self._text_footer(link), slot_of
        )
        # What each message encodes: the network's own values (the same for every recipient)
        # filled in once, used while a recipient's values do not replace them
        fixed = {i: _text(self.static[n]) for i, n in enumerate(names) if n in self.static}
        self.baked = frozenset(names[i] for i in fixed)
        self.subject_baked = pieces.bake(self.subject_pieces, fixed)
        escaped = {i: html.escape(v, quote=True) for i, v in fixed.items()}
        self.html_base64 = pieces.Base64Pieces(pieces.bake(self.html_pieces, escaped))
        self.text_qp = pieces.QuotedPrintablePieces(pieces.bake(self.text_pieces, fixed))
        self.fast = True

    def _compile_slow(self) -> None:
        t = self.template
        env = environment(False, self.limits)
        self.subject_tmpl: Template = env.from_string(t.subject)
        self.content_tmpl: Template = (
            environment(True, self.limits) if t.format == Format.HTML else env
        ).from_string(t.content)
        self.fast = False

    # -- per recipient ----------------------------------------------------------------------

    def _slot_values(self, values: Mapping[str, object]) -> tuple[list[str], list[str]]:
        """Each slot's value as it is, and HTML-escaped (the fast path)."""
        try:
            raw = [_text(values[name]) for name in self.slots]
        except KeyError as exc:
            raise RenderError(f"no value for the placeholder {exc.args[0]!r}") from exc
        return raw, [html.escape(v, quote=True) for v in raw]

    def _render(self, values: Mapping[str, object]) -> tuple[str, str, str]:
        if self.fast:
            raw, escaped = self._slot_values(values)
            return (
                pieces.join(self.subject_pieces, raw),
                pieces.join(self.text_pieces, raw),
                pieces.join(self.html_pieces, escaped),
            )
        try:
            subject = self.subject_tmpl.render(values)
            if self.template.format == Format.MARKDOWN:
                body = markdown_to_html(
                    self.content_tmpl.render(
                        {
                            k: escape_markdown(v) if isinstance(v, str) else v
                            for k, v in values.items()
                        }
                    )
                )
                text = to_text(self.content_tmpl.render(values), Format.MARKDOWN)
            else:
                rendered = self.content_tmpl.render(values)
                body = to_html(rendered, self.template.format)
                text = to_text(rendered, self.template.format)
        except Exception as exc:  # the sandbox refusing, a missing value, a failing filter
            raise RenderError(f"template failed: {type(exc).__name__}: {exc}") from exc
        unsubscribe = values.get(UNSUBSCRIBE)
        unsubscribe = unsubscribe if isinstance(unsubscribe, str) else None
        doc = self.layout.render(self._layout_vars(subject, body, unsubscribe))
        return subject, text + self._text_footer(unsubscribe), _INLINER.inline(doc)

    def render(self, values: Mapping[str, object]) -> tuple[str, str, str]:
        """(subject, text, HTML) for these values, as a recipient would get them."""
        return self._render({**self.static, **values})

    def message_id(self, email_key: str, key: str = "") -> str:
        """Derived from the send (`id_key`, plus `key`, e.g. the event) and the recipient."""
        seed = f"{self.template.id_key}\x00{key}\x00{email_key}"
        return f"<{hashlib.sha256(seed.encode()).hexdigest()[:32]}@{self.domain}>"

    def build(
        self,
        address: str,
        name: str,
        values: Mapping[str, object],
        unsubscribe_mailto: str | None = None,
        *,
        key: str = "",
        dated: bool = True,
        subject_prefix: str = "",
    ) -> Built:
        """The message for one recipient: To is this recipient alone.

        `dated=False` leaves out the Date header, for messages stored now and sent later (the
        sender prepends it then). `subject_prefix` marks a test (`[test] `).
        """
        merged = {**self.static, **values}
        html_part: bytes | None = None  # the HTML part, base64-encoded
        if self.fast and self.baked.isdisjoint(values):
            # both parts encoded from their skeletons: only the lines that vary
            raw, escaped = self._slot_values(merged)
            subject = pieces.join(self.subject_baked, raw)
            text_part = self.text_qp.encode(raw)
            if self.template.style != Style.PLAIN:
                html_part = self.html_base64.encode([v.encode("utf-8") for v in escaped])
        else:
            subject, text, body = self._render(merged)
            text_part = pieces.quoted_printable(text)
            if self.template.style != Style.PLAIN:
                html_part = pieces.base64_lines(body.encode("utf-8"))
        if subject_prefix:
            subject = subject_prefix + subject
        if subject != self.subject_seen:  # checked and encoded once while it stays the same
            header_value(subject, "the rendered subject")
            if len(subject) > self.limits.subject_chars:
                raise RenderError(
                    f"the rendered subject is {len(subject):,} characters, more than the limit "
                    f"of {self.limits.subject_chars:,} (limits.subject_chars)"
                )
            self.subject_seen, self.subject_line = subject, f"Subject: {subject_header(subject)}"
        if not address.isascii() or not is_address(address):
            raise RenderError(
                "the address is not a plain ASCII address (SMTPUTF8 is not supported)"
            )
        header_value(name, "the recipient's name")
        message_id = self.message_id(address.lower(), key)
        headers = [
            self.from_header or f"From: {header_value(self.template.sender, 'the sender')}",
            f"To: {mailbox(name, address)}",
            self.subject_line,
            *([f"Date: {self.dates.now()}"] if dated else []),
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
        ]
        if self.template.reply_to:
            headers.append(
                self.reply_to_header
                or f"Reply-To: {header_value(self.template.reply_to, 'Reply-To')}"
            )
        unsubscribe = merged.get(UNSUBSCRIBE)
        if self.template.unsubscribe and isinstance(unsubscribe, str):
            mailto = (
                f"mailto:{unsubscribe_mailto}?subject=unsubscribe" if unsubscribe_mailto else None
            )
            targets = f"<{unsubscribe}>" + (f", <{mailto}>" if mailto else "")
            header_value(targets, "the unsubscribe link")
            headers += [
                f"List-Unsubscribe: {targets}",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            ]
        return Built(self._assemble(headers, text_part, html_part), message_id, subject)

    def _assemble(self, headers: list[str], text_part: bytes, html_part: bytes | None) -> bytes:
        qp = "Content-Transfer-Encoding: quoted-printable"
        if html_part is None:
            head = "\r\n".join([*headers, "Content-Type: text/plain; charset=utf-8", qp]).encode()
            return head + b"\r\n\r\n" + text_part
        b = self.boundary
        head = "\r\n".join(
            [*headers, f'Content-Type: multipart/alternative; boundary="{b}"']
        ).encode()
        text_head = (
            f"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n{qp}\r\n\r\n".encode()
        )
        html_head = f"\r\n--{b}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        return b"".join(
            [head, text_head, text_part, html_head, html_part, f"\r\n--{b}--\r\n".encode()]
        )
