"""Rendering: messages per recipient, layouts, notices sanitised for dashboards."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from html import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commsync.model import BroadcastSpec, Targets, Theme
from commsync.render.message import EmailTemplate, MessageFactory, RenderError, encoded_words
from commsync.render.notice import render_notice
from tests.helpers import Repo

STATIC = {"network_name": "Acme Sites", "network_url": "https://acme.example"}


def _factory(
    subject: str,
    content: str,
    fmt: str = "markdown",
    style: str = "html",
    layout: str | None = None,
    unsubscribe: bool = True,
) -> MessageFactory:
    template = EmailTemplate(
        subject,
        content,
        fmt,
        style,
        "Acme Sites <hello@acme.example>",
        "help@acme.example",
        unsubscribe,
        "store/b/x",
    )
    return MessageFactory(
        template,
        theme=Theme(
            brand_color="#112233",
            footer="You have a site with **us**.",
            company_address="1 Example St",
        ),
        static=STATIC,
        layout=layout,
    )


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    return message


VALUES = {
    "customer_name": "Zoë <b>*Star*</b>",
    "customer_first_name": "Zoë",
    "unsubscribe_url": "https://acme.example/u/t0k",
}


@pytest.mark.parametrize("logic", [False, True], ids=["plain placeholders", "template logic"])
def test_values_are_literal_in_both_parts(logic: bool) -> None:
    content = "Hi **{{ customer_name }}**!\n\n[Leave]({{ unsubscribe_url }})\n"
    if logic:
        content = "{% if customer_name %}" + content + "{% endif %}"
    factory = _factory("Hello {{ customer_first_name }}", content)
    assert factory.fast is not logic
    message = _parse(factory.build("zoe@example.com", "Zoë Star", VALUES, "help@acme.example").data)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<strong>Zoë &lt;b&gt;*Star*&lt;/b&gt;</strong>" in html
    assert "Hi **Zoë <b>*Star*</b>**!" in text
    assert (
        'href="https://acme.example/u/t0k"' in html
        and "Unsubscribe: https://acme.example/u/t0k" in text
    )
    assert "color: #112233" in html  # the theme, with CSS inlined
    assert "You have a site with <strong>us</strong>." in html and "1 Example St" in html
    assert message["Subject"] == "Hello Zoë" and message["To"] == "Zoë Star <zoe@example.com>"
    assert message["Reply-To"] == "help@acme.example"


def test_a_custom_layout_replaces_the_built_in_one() -> None:
    layout = "<html><body><h1 style='x'>{{ network_name }}</h1>{{ content }}<footer>{{ unsubscribe_url }}</footer></body></html>"
    message = _parse(
        _factory("S", "Body **{{ customer_first_name }}**", layout=layout)
        .build("a@example.com", "", VALUES)
        .data
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<h1" in html and "Acme Sites" in html and "<strong>Zoë</strong>" in html
    assert "<footer>https://acme.example/u/t0k</footer>" in html
    assert "card" not in html  # nothing of the built-in layout


def test_plain_style_and_text_format() -> None:
    factory = _factory(
        "S",
        "Line one\nLine two\n\nPara {{ customer_first_name }}",
        fmt="text",
        style="plain",
        unsubscribe=False,
    )
    message = _parse(factory.build("a@example.com", "", VALUES).data)
    assert message.get_content_type() == "text/plain"
    assert "Para Zoë" in message.get_content()
    assert "List-Unsubscribe" not in message


def test_html_format_gets_a_text_alternative() -> None:
    factory = _factory(
        "S",
        "<p>Hello <b>{{ customer_first_name }}</b>, see <a href='https://x.example/a'>this</a>.</p>",
        fmt="html",
    )
    message = _parse(factory.build("a@example.com", "", VALUES).data)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Zoë, see this (https://x.example/a)." in text


def test_a_line_break_in_the_rendered_subject_fails_that_recipient() -> None:
    factory = _factory("Hello {{ customer_first_name }}", "x")
    with pytest.raises(RenderError, match="rendered subject contains a line break"):
        factory.build(
            "a@example.com", "", {**VALUES, "customer_first_name": "Eve\r\nBcc: all@example.com"}
        )


def test_a_template_that_fails_for_one_recipient_is_a_render_error() -> None:
    factory = _factory("Hi", "{{ customer_name.upper() }} {{ missing }}")
    with pytest.raises(RenderError, match="UndefinedError"):
        factory.build("a@example.com", "", VALUES)


def test_message_ids_are_derived_from_store_send_and_recipient() -> None:
    one, two = _factory("S", "x"), _factory("S", "x")
    assert one.message_id("a@example.com") == two.message_id("a@example.com")
    assert one.message_id("a@example.com") != one.message_id("b@example.com")
    assert one.message_id("a@example.com").endswith("@acme.example>")


def test_encoded_words_stay_short_and_decode() -> None:
    from email.header import decode_header, make_header

    text = "Ünïcødé 😀 " * 20
    encoded = encoded_words(text)
    assert all(len(word) <= 75 for word in encoded.split("\r\n "))
    assert str(make_header(decode_header(encoded.replace("\r\n ", " ")))).replace(
        " ", ""
    ) == text.replace(" ", "")


def test_notices_are_sanitised_for_dashboards() -> None:
    spec = BroadcastSpec(
        "notice",
        "Hi {{ customer_first_name }}",
        "**Bold** <script>alert(1)</script><img src=x onerror=alert(1)> [ok](https://acme.example) [bad](javascript:alert(1)) {{ customer_name }}",
        Targets(all=True),
        message_type="warning",
    )
    rendered = render_notice(spec, VALUES)
    assert rendered.heading == "Hi Zoë"
    assert "<strong>Bold</strong>" in rendered.html
    for forbidden in ("<script", "onerror", 'href="javascript', "<img"):
        assert forbidden not in rendered.html
    raw_link = BroadcastSpec(
        "notice", "H", '<a href="javascript:alert(1)">x</a>', Targets(all=True), format="html"
    )
    assert render_notice(raw_link, VALUES).html == '<a rel="noopener noreferrer nofollow">x</a>'
    assert (
        'href="https://acme.example"' in rendered.html
        and 'rel="noopener noreferrer nofollow"' in rendered.html
    )
    assert "Zoë &lt;b&gt;*Star*&lt;/b&gt;" in rendered.html  # a customer's name is text, not markup
    html_spec = BroadcastSpec(
        "notice", "H", "<p onclick='x'>{{ customer_name }}</p>", Targets(all=True), format="html"
    )
    assert render_notice(html_spec, VALUES).html == "<p>Zoë &lt;b&gt;*Star*&lt;/b&gt;</p>"


_PIECE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300
)


@settings(max_examples=400, deadline=None)
@given(
    statics=st.lists(_PIECE_TEXT, min_size=1, max_size=6),
    messages=st.lists(st.lists(_PIECE_TEXT, min_size=5, max_size=5), min_size=1, max_size=4),
)
def test_the_html_skeleton_encodes_exactly_what_encoding_the_whole_text_gives(
    statics: list[str], messages: list[list[str]]
) -> None:
    """The HTML part of a message is base64 of static pieces with values between them; its
    static lines are encoded once per way a line can start (and kept), the rest per message.
    Whatever the pieces and values — empty, long, multi-byte — the bytes are those of encoding
    the joined text, for each message in turn (so with lines kept from earlier ones)."""
    from commsync.render.pieces import Base64Pieces, base64_lines, join

    layout: list[str | int] = []
    for i, static in enumerate(statics):
        layout += [static, i % 5]
    skeleton = Base64Pieces(layout)
    for values in messages:
        expected = base64_lines(join(layout, values).encode("utf-8"))
        assert skeleton.encode([v.encode("utf-8") for v in values]) == expected


_LINE_TEXT = st.lists(
    st.sampled_from(["a", " ", "\t", "=", "é", "\n", "\r", ".", "x" * 80, " \n", "\n\n", "ü" * 30]),
    max_size=12,
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(
    statics=st.lists(st.one_of(_LINE_TEXT, _PIECE_TEXT), min_size=1, max_size=6),
    messages=st.lists(st.lists(_LINE_TEXT, min_size=5, max_size=5), min_size=1, max_size=3),
)
def test_the_text_skeleton_encodes_exactly_what_encoding_the_whole_text_gives(
    statics: list[str], messages: list[list[str]]
) -> None:
    """The text part is quoted-printable of static lines and lines with values; the static
    ones are encoded once. Whatever the pieces and values — line breaks, carriage returns,
    trailing spaces, long lines, `=` — the bytes are those of encoding the joined text."""
    from commsync.render.pieces import QuotedPrintablePieces, join, quoted_printable

    layout: list[str | int] = []
    for i, static in enumerate(statics):
        layout += [static, i % 5]
    skeleton = QuotedPrintablePieces(layout)
    for values in messages:
        assert skeleton.encode(values) == quoted_printable(join(layout, values))


def test_a_message_from_the_skeleton_is_the_message_of_its_rendered_html() -> None:
    """The fast path's parts, decoded, are the HTML and text the same values render (the HTML
    in lines of 76 characters of base64), for recipients whose values shift every line."""
    factory = _factory("Hello {{ customer_first_name }}", "Hi **{{ customer_name }}**\n\n" * 40)
    assert factory.fast
    for n in range(0, 120, 7):
        values = {**VALUES, "customer_name": "Zoë" + "x" * n, "customer_first_name": "é" * n}
        data = factory.build("zoe@example.com", "Zoë", values).data
        part = data.split(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)[1]
        encoded = part.split(b"\r\n--", 1)[0]
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
        message = _parse(data)
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        _, expected_text, expected_html = factory.render(values)
        assert html == expected_html
        assert text.replace("\r\n", "\n") == expected_text


def test_the_networks_values_are_filled_in_once_unless_a_recipients_replace_them() -> None:
    """`network_name` is the same for every recipient of a send, so the skeleton holds it
    already (escaped in the HTML, as it is in the text); values given for one message that
    replace it are used for that message."""
    template = EmailTemplate(
        "News from {{ network_name }}",
        "Hi {{ customer_first_name }}, from **{{ network_name }}** ({{ network_url }}).",
        "markdown",
        "html",
        "Acme <hello@acme.example>",
        None,
        True,
        "store/b/y",
    )
    static = {"network_name": "Tom & Jerry <Sites>", "network_url": "https://acme.example"}
    factory = MessageFactory(template, theme=Theme(), static=static)
    assert factory.fast and factory.baked == {"network_name", "network_url"}
    for values in (VALUES, {**VALUES, "network_name": "Other <Network>"}):
        message = _parse(factory.build("zoe@example.com", "Zoë", values).data)
        name = values.get("network_name", static["network_name"])
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        subject, expected_text, expected_html = factory.render(values)
        assert message["Subject"] == subject == f"News from {name}"
        assert html == expected_html and f"<strong>{escape(name)}</strong>" in html
        assert text.replace("\r\n", "\n") == expected_text and f"**{name}**" in text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90))
def test_a_plain_display_name_is_written_as_formataddr_writes_it(name: str) -> None:
    """The To header's display name skips formataddr when the name needs no quoting; the
    header must be what formataddr gives either way."""
    from email.utils import formataddr

    from commsync.render.headers import mailbox

    got = mailbox(name, "zoe@example.com")
    plain = name.strip(" \t")
    if plain and "=?" not in plain and len(plain) <= 78:
        assert got == formataddr((plain, "zoe@example.com"))
    elif not plain:
        assert got == "zoe@example.com"


def test_a_skeleton_past_its_memory_budget_encodes_the_rest_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lines a skeleton keeps are bounded (`_CACHE_BYTES`): past the budget the other line
    phases are encoded for each message, with the same bytes."""
    from commsync.render import pieces

    monkeypatch.setattr(pieces, "_CACHE_BYTES", 2_000)
    layout: list[str | int] = ["<p>" + "static text " * 200, 0, "</p>" + "more " * 300, 1]
    skeleton = pieces.Base64Pieces(layout)
    for n in range(120):  # every line phase, several times
        values = ["x" * n, "é" * (n % 7)]
        expected = pieces.base64_lines(pieces.join(layout, values).encode("utf-8"))
        assert skeleton.encode([v.encode("utf-8") for v in values]) == expected
    assert 0 < skeleton.cached <= 2_000


def test_a_long_running_process_keeps_the_emails_it_compiled_last(repo: Repo) -> None:
    """A worker compiles a system email once per version of its fields and reuses it; it keeps
    at most FACTORIES_KEPT of them — the ones used last — so an email edited thousands of times
    under one worker does not grow its memory without bound. (A worker's broadcasts are kept
    by the same `Kept`.)"""
    from commsync.api import Project
    from commsync.api.context import Context
    from commsync.model import SystemEmailFields
    from commsync.render.emails import FACTORIES_KEPT, SystemEmailFactories

    settings = Context(Project(repo.root)).settings()
    factories = SystemEmailFactories("store-1", settings)

    def version(n: int) -> SystemEmailFields:
        return SystemEmailFields("payment_received", "customer", f"Paid, v{n}", f"Thanks, v{n}")

    first = factories.get("payment_received", version(0))
    assert factories.get("payment_received", version(0)) is first  # reused, not compiled again
    for n in range(1, FACTORIES_KEPT + 50):
        factories.get("payment_received", version(n))
        factories.get("payment_received", version(0))  # in use all along: kept
    assert len(factories.cache) == FACTORIES_KEPT
    assert factories.get("payment_received", version(0)) is first
    again = factories.get("payment_received", version(1))  # dropped long ago: compiled anew
    assert again.render({})[0] == "Paid, v1"
    assert len(factories.cache) == FACTORIES_KEPT
