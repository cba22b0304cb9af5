"""The quick readers of plain CSV lines (repo/fastrows.py) decide nothing the general reader would
decide otherwise: any file reads to the same records and the same refusals, at the same lines,
with them and without them."""

from __future__ import annotations

import dataclasses
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from commsync.model.limits import DEFAULT_LIMITS
from commsync.repo.fastrows import customer_line, membership_line
from commsync.repo.records import CUSTOMERS, MEMBERSHIPS, Layout, R, parse_records, stream_records

# the pieces of which plain lines and every kind of trouble are made: values that pass (most of
# the time, so that whole lines are plain), values refused or read differently by the csv module,
# and (rarely: each ends the file or the line) NUL, carriage returns and line breaks
_GOOD = {  # per column, values that pass: most lines are plain
    "customer_id": ["c1", "7", "C-9.x@y:z"],
    "product": ["pro", "basic.plan"],
    "status": ["active", "trialing"],
    "id": ["7", "c1", "a.b@c"],
    "email": ["a@example.com", "b@EXAMPLE.com"],
}
_NAME = [
    "Ann",
    "Ünïcode",
    "fr_FR",
    "O'Brien",
    "z" * 40,
    "n" * 255,
    "n" * 256,
    '"Ann"',
    '"Smith, Jr."',
    '""',
]
_ODD = [
    "C-9.x@y:z", "b@EXAMPLE.com", "not-an-address", "", " ", " c1", "pro ", '"', '""', '"Ann"',
    "\t", "x" * 70, "y" * 300, "z" * 40, "Ann, Jr.", '"quoted, field"', "-bad", "UPPER", "é@x",
]  # fmt: skip
_HARD = ["\x00", "\r", "\n", '"two\nlines"', '"a""b"']


def _file(header: str, lines: list[str]) -> bytes:
    return (header + "\n" + "".join(lines)).encode()


def _both(path: str, data: bytes, layout: Layout[R]) -> None:
    general = dataclasses.replace(layout, plain=None)
    assert layout.plain is not None
    quick = parse_records(path, io.BytesIO(data), layout)
    slow = parse_records(path, io.BytesIO(data), general)
    assert quick == slow
    diags_quick: list[object] = []
    diags_slow: list[object] = []
    streamed = list(
        stream_records(path, io.BytesIO(data), layout, diags=diags_quick, limits=DEFAULT_LIMITS)
    )
    expected = list(
        stream_records(path, io.BytesIO(data), general, diags=diags_slow, limits=DEFAULT_LIMITS)
    )
    assert streamed == expected and diags_quick == diags_slow


_ending = st.sampled_from(["\n", "\n", "\r\n", ""])


def _rows(header: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Lines for `header`: each field most often a value its column accepts, else anything
    from the odd pieces or (rarely) the hard ones; now and then a field more or fewer."""
    names = [n.strip() for n in header.split(",")]
    fields = [
        st.sampled_from(_GOOD.get(n, _NAME) * 10 + _ODD + _HARD[: len(_HARD) // 2 + 1])
        for n in names
    ]
    line = st.one_of(
        st.tuples(*fields).map(",".join),
        st.tuples(*fields[:-1]).map(",".join),
        st.tuples(*fields, fields[0]).map(",".join),
        st.lists(st.sampled_from(_ODD + _HARD), max_size=len(names) + 1).map(",".join),
    )
    return st.lists(st.tuples(line, _ending), min_size=1, max_size=8)


def _lines(rows: list[tuple[str, str]]) -> list[str]:
    return [text + (end or "\n") for text, end in rows[:-1]] + [rows[-1][0] + rows[-1][1]]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["customer_id,product,status", "status,customer_id,product", "product , status,customer_id"]
    ),
    st.data(),
)
def test_memberships_read_the_same_with_the_quick_reader(header: str, data: st.DataObject) -> None:
    rows = data.draw(_rows(header))
    _both("m.csv", _file(header, _lines(rows)), MEMBERSHIPS)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "id,email,username,first_name,last_name,display_name,locale",
            "email,id",
            "id,email,first_name,locale",
            "id,email,email",
        ]
    ),
    st.data(),
)
def test_customers_read_the_same_with_the_quick_reader(header: str, data: st.DataObject) -> None:
    rows = data.draw(_rows(header))
    _both("c.csv", _file(header, _lines(rows)), CUSTOMERS)


def test_plain_lines_take_the_quick_path() -> None:
    """The quick readers accept the plain lines of a nightly export (else they would only add
    work), and leave every other line to the general reader."""
    member = membership_line(["customer_id", "product", "status"])
    assert member is not None
    assert member("c1,pro,active\r\n") == ("c1", "pro", "active")
    for other in ("c1, pro,active\n", '"c1",pro,active\n', "c1,pro\n", "c1,Pro,active\n"):
        assert member(other) is None
    assert membership_line(["customer_id", "product"]) is None
    customer = customer_line(["id", "email", "first_name"])
    assert customer is not None
    assert customer("7,a@example.com,Ann\n") == (
        "7",
        "a@example.com",
        None,
        "Ann",
        None,
        None,
        None,
    )
    assert customer("7,a@example.com,\n") == ("7", "a@example.com", None, None, None, None, None)
    for other in ('7,a@example.com,"Ann"\n', "7,nobody,Ann\n", "7,a@example.com\n"):
        assert customer(other) is None
    assert customer_line(["id", "email", "id"]) is None
