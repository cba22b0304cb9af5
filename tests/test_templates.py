"""Template checks: the sandbox, and the parser-free fast path agreeing with the parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError, UndefinedError

from commsync.model.limits import DEFAULT_LIMITS
from commsync.render.sandbox import (
    _parsed_issues,
    check_template,
    environment,
    placeholders,
    simple_placeholders,
    substitute,
)

ALLOWED = frozenset({"customer_name", "network_name", "site_url"})
NAMES = st.sampled_from(
    ["customer_name", "network_name", "site_url", "custmer_name", "x", "_y", "site_url2"]
)
TEXT = st.text(alphabet="ab {}\n.%#-", max_size=12).filter(
    lambda t: "{{" not in t and "{%" not in t and "{#" not in t and not t.endswith("{")
)


@st.composite
def simple_templates(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        parts.append(draw(TEXT))
        space = draw(st.sampled_from(["", " ", "  "]))
        parts.append("{{" + space + draw(NAMES) + draw(st.sampled_from(["", " "])) + "}}")
    parts.append(draw(TEXT))
    return "".join(parts)


@settings(max_examples=500, deadline=None)
@given(simple_templates())
def test_fast_path_reports_exactly_what_the_parser_reports(source: str) -> None:
    assert simple_placeholders(source) is not None
    assert check_template(source, ALLOWED, "tests") == _parsed_issues(source, ALLOWED, "tests")
    assert placeholders(source) == frozenset(n for n, _ in simple_placeholders(source) or [])


@pytest.mark.parametrize(
    "source",
    [
        "{{ a.b }}",
        "{{ a|upper }}",
        "{{- a }}",
        "{{ a -}}",
        "{% if a %}x{% endif %}",
        "{# c #}{{ a }}",
        "{{{ a }}}",
        "{{ a }} {{ b() }}",
    ],
)
def test_anything_beyond_plain_names_takes_the_parser(source: str) -> None:
    assert simple_placeholders(source) is None


def test_the_sandbox_refuses_at_render_time_too() -> None:
    env = environment()
    with pytest.raises(SecurityError):
        env.from_string("{{ name.__class__.__mro__ }}").render(name="x")
    with pytest.raises(UndefinedError):
        env.from_string("Hello {{ missing }}").render()
    with pytest.raises(SecurityError):
        env.from_string("{% set l = [] %}{{ l.append(1) }}").render()  # immutable sandbox
    assert env.globals == {}
    assert environment(autoescape=True).from_string("{{ n }}").render(n="<b>") == "&lt;b&gt;"


_NAMES = st.sampled_from(["customer_name", "payment_total", "network_name", "n"])
_TEXT = st.text(st.characters(blacklist_characters="{}%#\r\n"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.tuples(_TEXT, _NAMES, st.sampled_from(["{{ ", "{{", "{{  "])), max_size=4),
    tail=_TEXT,
    values=st.fixed_dictionaries(
        {
            "customer_name": st.text(max_size=8),
            "payment_total": st.one_of(
                st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
            ),
            "network_name": st.one_of(st.none(), st.booleans(), st.text(max_size=5)),
        }
    ),
)
def test_substituting_placeholders_renders_what_the_sandbox_renders(
    parts: list[tuple[str, str, str]], tail: str, values: dict[str, object]
) -> None:
    """The plan's fast path for sample subjects: for a template that only substitutes
    placeholders, the same text as compiling it in the sandbox; None where the sandbox refuses."""
    source = "".join(f"{text}{open_}{name} }}}}" for text, name, open_ in parts) + tail
    fast = substitute(source, values)
    try:
        slow: str | None = environment(False, DEFAULT_LIMITS).from_string(source).render(values)
    except Exception:
        slow = None
    assert fast == slow, source
