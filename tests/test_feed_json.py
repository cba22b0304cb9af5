"""The feed writes each notice's JSON from a template compiled once; it must be exactly what
`json.dumps` writes for the notice rendered the long way, for any customer values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from commsync.api.feed import _Active, json_fields
from commsync.model import BroadcastSpec, Targets
from commsync.render.notice import CompiledNotice

NAMES = ("customer_first_name", "customer_name", "network_name", "customer_user_email")
SPECS = [
    BroadcastSpec(
        "notice",
        'Hello {{ customer_first_name }} {"json": [1]} — ünïcode 🎉',
        "Hi {{ customer_first_name }}, **bold** `{ code }` on {{ network_name }}.\n\n"
        "* a list with {{ customer_name }}\n* [a link](https://example.com/{x}) \\ end",
        Targets(all=True),
        message_type="warning",
        expires_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
    ),
    BroadcastSpec(
        "notice",
        "No placeholders at all",
        "<p>Plain {{ customer_user_email }} & <b>html</b> \u2028 \x7f</p>",
        Targets(products=("pro",)),
        format="html",
        dismissible=False,
    ),
    BroadcastSpec(  # logic: rendered the long way by both (no template)
        "notice",
        "{% if customer_first_name %}Hi {{ customer_first_name }}{% endif %}",
        "{{ customer_name | upper }} sees this",
        Targets(customers=("1",)),
        message_type="error",
    ),
]
VALUES = st.fixed_dictionaries(
    {
        name: st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
        )
        | st.sampled_from(
            ["{0}", "{r_customer_name}", '"quoted"', "</script>", "a\\b", "\U0001f600"]
        )
        for name in NAMES
    }
)


@settings(max_examples=300, deadline=None)
@given(values=VALUES)
def test_a_notice_template_writes_what_json_dumps_writes(values: dict[str, str]) -> None:
    for n, spec in enumerate(SPECS):
        notice = _Active(f"bulk/n{n}", CompiledNotice(spec))
        assert (notice.template is not None) == (n < 2)  # the first two take the fast path
        fields = json_fields(values, NAMES)
        expected = json.dumps(notice.as_json(values), separators=(",", ":"))
        assert notice.json_text(values, fields) == expected
        assert json.loads(notice.json_text(values, fields))["id"] == f"bulk/n{n}"
