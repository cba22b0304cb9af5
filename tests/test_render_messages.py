"""Rendering: messages per recipient, layouts, notices sanitised for dashboards."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from commsync.model import BroadcastSpec, Targets, Theme
from commsync.render.message import EmailTemplate, MessageFactory, RenderError, encoded_words
from commsync.render.notice import render_notice

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
