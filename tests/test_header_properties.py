"""No header can be injected: messages built from arbitrary strings parse strictly (hypothesis).

Every value that reaches a header — the recipient's name and address from an event payload or a
customer record, any placeholder value in the subject, through the fast (placeholders only) and
the sandboxed (template logic) path alike — is either refused with a RenderError, or yields a
message that `email.policy.strict` parses into exactly the headers commsync writes: one To naming
this recipient alone, a subject that decodes to exactly what was rendered, no line over 998
octets.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commsync.model import Theme
from commsync.model.mail import is_address
from commsync.render.message import EmailTemplate, MessageFactory, RenderError

HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "content-type",
}
# What a line break, a NUL or any other control character would be, in any part of the input.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SUBJECTS = {
    "fast": "Hi {{ customer_first_name }}: {{ plan }}",
    "sandboxed": "{% if plan %}Hi {{ customer_first_name }}: {{ plan }}{% endif %}",
}

# Text that favours what breaks headers: CR, LF, NUL, quotes, angle brackets, encoded-word
# markers, commas, semicolons, colons, non-ASCII and long runs.
_NASTY = st.sampled_from(
    ["\r", "\n", "\r\n", "\x00", '"', "<", ">", "=?", "?=", ",", ";", ":", "\\", "@", " ", "\t"]
)
nasty_text = st.lists(st.one_of(_NASTY, st.text(max_size=12)), max_size=12).map("".join)
long_text = st.integers(min_value=0, max_value=1200).map(lambda n: "Zoë Ab" * (n // 6))
names = st.one_of(nasty_text, long_text, st.text())
addresses = st.one_of(
    st.emails(),
    st.sampled_from(
        [
            "a@example.com",
            "a@example.com\r\nBcc: all@example.com",
            "a@example.com, b@example.com",
            "<a@example.com>",
            "zoë@example.com",
            "a@example.com>",
            "",
        ]
    ),
    nasty_text,
)


def _factory(subject: str) -> MessageFactory:
    template = EmailTemplate(
        subject,
        "Hello {{ customer_name }}",
        "markdown",
        "html",
        "Acme Sites <hello@acme.example>",
        "help@acme.example",
        True,
        "store/b/x",
    )
    return MessageFactory(
        template,
        theme=Theme(footer="f", company_address="1 Example St"),
        static={"network_name": "Acme", "network_url": "https://acme.example"},
    )


FACTORIES = {kind: _factory(subject) for kind, subject in SUBJECTS.items()}


def _display_name(message: EmailMessage) -> str:
    """The To display name as RFC 2047 reads it.

    Python's structured-header parser keeps the folding space between adjacent encoded-words
    of a phrase, which RFC 2047 section 6.2 says a reader ignores; decode_header does not.
    """
    raw = next(value for key, value in message.raw_items() if key.lower() == "to")
    phrase = raw.replace("\r\n", "").rpartition(" <")[0]
    if "=?" in phrase:
        return str(make_header(decode_header(phrase)))
    return str(message["To"].addresses[0].display_name)


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


@pytest.mark.parametrize("path", sorted(SUBJECTS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, address=addresses, first=names, plan=names)
@example(
    name="Eve\r\nBcc: all@example.com",
    address="a@example.com",
    first="x",
    plan="y",
)
@example(name="Eve", address="a@example.com", first="x\nBcc: all@example.com", plan="y")
@example(name='"Eve" <e@evil.example>, x', address="a@example.com", first="x", plan="y")
@example(name="=?utf-8?q?Bcc:?=", address="a@example.com", first="=?utf-8?b?QQ==?=", plan="y")
@example(name="A" * 1500, address="a@example.com", first="B" * 900, plan="C")
def test_no_input_adds_a_header_or_a_recipient(
    path: str, name: str, address: str, first: str, plan: str
) -> None:
    factory = FACTORIES[path]
    values = {
        "customer_name": name,
        "customer_first_name": first,
        "plan": plan,
        "unsubscribe_url": "https://acme.example/u/t0k",
    }
    subject = f"Hi {first}: {plan}" if (path == "fast" or plan) else ""
    refusable = (
        _CONTROL.search(name + subject) is not None
        or not address.isascii()
        or not is_address(address)
        or len(subject) > 998
    )
    try:
        built = factory.build(address, name, values)
    except RenderError:
        assert refusable, "a harmless recipient was refused"
        return
    assert not _CONTROL.search(name + subject) and is_address(address)
    assert all(len(line) <= 998 for line in built.data.split(b"\r\n")), "a line over 998 octets"
    message = _parse(built.data)
    assert {key.lower() for key in message} == HEADERS
    assert len(message.get_all("To") or []) == 1
    to = message["To"].addresses
    assert len(to) == 1, to
    assert to[0].addr_spec == address
    assert _display_name(message) == name.strip(" \t")
    assert message["Subject"] == subject == built.subject
    for other in ("From", "Reply-To"):
        assert len(message[other].addresses) == 1
