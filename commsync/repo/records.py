"""Platform data files (customers, products, memberships) and suppression lists, as CSV with a
header row, or JSONL.

Parsing is all-or-nothing: every bad row is reported as `FILE:line: error: …` and, if there is
one, nothing of the file is written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import BinaryIO, cast

from commsync.diagnostics import Diagnostic
from commsync.model import (
    CustomerRecord,
    MembershipRecord,
    ProductRecord,
    SuppressionReason,
    SuppressionRecord,
    SuppressionScope,
    jsontext,
)
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.model.mail import is_address
from commsync.repo.csvrows import Layout as Layout
from commsync.repo.csvrows import R, RowError, Stop, csv_checked
from commsync.repo.fastrows import ID as _ID
from commsync.repo.fastrows import LIMITS, TEXT_LIMIT, customer_line, membership_line
from commsync.repo.fastrows import SLUG as _SLUG
from commsync.repo.fastrows import STATUS as _STATUS


def _text(row: Mapping[str, str], name: str, limit: int = TEXT_LIMIT) -> str | None:
    # called for every field of every row of an import: plain `in` tests, no generator
    value = row.get(name)
    if not value or not (value := value.strip()):
        return None
    if len(value) > limit:
        raise RowError(f"{name} is longer than {limit} characters")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise RowError(f"{name} must be one line")
    return value


def _required(row: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str:
    # A value the pattern accepts passes every check of `_text` (the patterns allow no line
    # break, no NUL, and fewer characters than its limit): most rows take this path.
    value = row.get(name)
    if value and pattern.fullmatch(stripped := value.strip()):
        return stripped
    value = _text(row, name)
    if value is None:
        raise RowError(f"{name} is empty")
    if not pattern.fullmatch(value):
        raise RowError(f"{name} {value!r} is not a valid {what}")
    return value


def _customer(row: Mapping[str, str]) -> CustomerRecord:
    email = _text(row, "email", LIMITS["email"])
    if email is None or not is_address(email):
        raise RowError(f"email {email or ''!r} is not an email address")
    return CustomerRecord(
        id=_required(row, "id", _ID, "customer id"),
        email=email,
        username=_text(row, "username"),
        first_name=_text(row, "first_name"),
        last_name=_text(row, "last_name"),
        display_name=_text(row, "display_name"),
        locale=_text(row, "locale", LIMITS["locale"]),
    )


def _product(row: Mapping[str, str]) -> ProductRecord:
    slug = _required(row, "slug", _SLUG, "product slug (a-z, 0-9, '.', '_', '-')")
    return ProductRecord(slug=slug, name=_text(row, "name") or slug)


def _membership(row: Mapping[str, str]) -> MembershipRecord:
    return MembershipRecord(
        customer_id=_required(row, "customer_id", _ID, "customer id"),
        product=_required(row, "product", _SLUG, "product slug"),
        status=_required(row, "status", _STATUS, "status (lowercase, e.g. active)"),
    )


def _choice(
    row: Mapping[str, str], name: str, kind: type[SuppressionReason] | type[SuppressionScope]
) -> str | None:
    value = _text(row, name, 32)
    if value is not None and value not in {str(v) for v in kind}:
        raise RowError(f"{name} {value!r} is not one of: {', '.join(str(v) for v in kind)}")
    return value


def _suppression(row: Mapping[str, str]) -> SuppressionRecord:
    address = _text(row, "address", LIMITS["email"])
    if address is None or not is_address(address):
        raise RowError(f"address {address or ''!r} is not an email address")
    reason = _choice(row, "reason", SuppressionReason)
    scope = _choice(row, "scope", SuppressionScope)
    return SuppressionRecord(
        address,
        SuppressionReason(reason) if reason else SuppressionReason.UNSUBSCRIBE,
        SuppressionScope(scope) if scope else None,
    )


CUSTOMERS: Layout[CustomerRecord] = Layout(
    ("id", "email"),
    ("username", "first_name", "last_name", "display_name", "locale"),
    lambda r: (r.id,),
    _customer,
    customer_line,
)
PRODUCTS: Layout[ProductRecord] = Layout(("slug",), ("name",), lambda r: (r.slug,), _product)
MEMBERSHIPS: Layout[MembershipRecord] = Layout(
    ("customer_id", "product", "status"),
    (),
    lambda r: (r.customer_id, r.product),
    _membership,
    membership_line,
)
SUPPRESSIONS: Layout[SuppressionRecord] = Layout(
    ("address",), ("reason", "scope"), lambda r: (r.email_key,), _suppression
)


Row = tuple[int, dict[str, object] | None, str | None]  # line, fields (None: unreadable), problem


def _lines(stream: BinaryIO, max_bytes: int) -> Iterator[str]:
    """The file's lines, each at most `max_bytes`: a file is never read whole."""
    number = 0
    while raw := stream.readline(max_bytes + 1):
        number += 1
        if len(raw) > max_bytes:
            raise Stop(number, f"a line longer than {max_bytes:,} bytes (limits.row_bytes)")
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise Stop(number, "file is not valid UTF-8") from None


def _header_problems(names: list[str], layout: Layout[R]) -> list[str]:
    out = []
    missing = [c for c in layout.required if c not in names]
    if missing:
        out.append(f"header lacks column(s) {', '.join(missing)}")
    unknown = [c for c in names if c not in layout.columns]
    if unknown:
        out.append(
            f"unknown column(s) {', '.join(unknown)} (expected: {', '.join(layout.columns)})"
        )
    return out


def _jsonl_rows(lines: Iterator[str], max_depth: int) -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = jsontext.loads(line, max_depth)
        except jsontext.JsonTextError as exc:
            problem = exc.message.removeprefix("not valid JSON: ")
            yield number, None, f"invalid JSON: {problem}"
            continue
        if not isinstance(value, dict):
            yield number, None, "each line must be a JSON object"
            continue
        yield number, {str(k): v for k, v in value.items()}, None


def _jsonl_fields(row: dict[str, object], layout: Layout[R]) -> dict[str, str]:
    unknown = [k for k in row if k not in layout.columns]
    if unknown:
        raise RowError(
            f"unknown key(s) {', '.join(unknown)} (expected: {', '.join(layout.columns)})"
        )
    out = {}
    for key, value in row.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f"{key} must be a string or an integer")
        out[key] = str(value)
    return out


def parse_records(
    path: str, stream: BinaryIO, layout: Layout[R], limits: Limits = DEFAULT_LIMITS
) -> tuple[list[tuple[int, R]], list[Diagnostic]]:
    """(line, record) of a CSV (with header) or JSONL file; JSONL when named .jsonl or .ndjson.

    The file is read a line at a time, each line at most `limits.row_bytes`.
    """
    lines = _lines(stream, limits.row_bytes)
    try:
        if path.endswith((".jsonl", ".ndjson")):
            diags: list[Diagnostic] = []
            rows = _jsonl_rows(lines, limits.json_depth)
            records = _build(path, _checked(path, rows, layout, True, diags), layout, diags)
        else:
            records, diags = _csv_records(path, lines, layout)
    except Stop as exc:
        return [], [Diagnostic(path, exc.line, 0, exc.message)]
    if not records and not diags:
        diags.append(Diagnostic(path, 1, 0, "no rows to import"))
    return records, diags


def _csv_header(
    path: str, lines: Iterator[str], layout: Layout[R]
) -> tuple[list[str], list[Diagnostic]]:
    """The CSV file's header row (names stripped), and what is wrong with it."""
    first = next(lines, "")
    try:
        header = [h.strip() for h in next(csv.reader([first]), [])]
    except csv.Error as exc:
        raise Stop(1, f"unreadable CSV: {exc}") from None
    problems = _header_problems(header, layout)
    return header, [Diagnostic(path, 1, 0, p) for p in problems]


def _csv_records(
    path: str, lines: Iterator[str], layout: Layout[R]
) -> tuple[list[tuple[int, R]], list[Diagnostic]]:
    header, problems = _csv_header(path, lines, layout)
    if problems:
        return [], problems
    diags: list[Diagnostic] = []
    return _build(path, csv_checked(path, lines, header, layout, diags), layout, diags), diags


def _checked(
    path: str, rows: Iterable[Row], layout: Layout[R], typed: bool, diags: list[Diagnostic]
) -> Iterator[tuple[int, R]]:
    """The records of `rows` the layout accepts; a refused row goes to `diags` instead."""
    for line, row, problem in rows:
        try:
            if problem or row is None:
                raise RowError(problem or "unreadable row")
            # a CSV row is already text under the header's (stripped) names
            fields = _jsonl_fields(row, layout) if typed else cast(dict[str, str], row)
            record = layout.build(fields)
        except RowError as exc:
            diags.append(Diagnostic(path, line, 0, str(exc)))
            continue
        yield line, record


def stream_records(
    path: str,
    stream: BinaryIO,
    layout: Layout[R],
    limits: Limits,
    diags: list[Diagnostic],
) -> Iterator[tuple[int, R]]:
    """(line, record) of a CSV or JSONL file as it is read, in constant memory: refused rows go
    to `diags` (so does an empty file) and are not yielded. Keys seen twice are not looked for
    here: the caller's store finds them among everything it staged."""
    lines = _lines(stream, limits.row_bytes)
    count = 0
    try:
        checked: Iterator[tuple[int, R]]
        if path.endswith((".jsonl", ".ndjson")):
            checked = _checked(path, _jsonl_rows(lines, limits.json_depth), layout, True, diags)
        else:
            header, problems = _csv_header(path, lines, layout)
            if problems:
                diags.extend(problems)
                return
            checked = csv_checked(path, lines, header, layout, diags)
        first = next(checked, None)
        if first is not None:
            count = 1
            yield first
            yield from checked  # no per-row work here: a million rows pass through
    except Stop as exc:
        diags.append(Diagnostic(path, exc.line, 0, exc.message))
        return
    if not count and not diags:
        diags.append(Diagnostic(path, 1, 0, "no rows to import"))


def _build(
    path: str,
    checked: Iterable[tuple[int, R]],
    layout: Layout[R],
    diags: list[Diagnostic],
    unit: str = "line",
) -> list[tuple[int, R]]:
    """The checked records (refused rows are in `diags`); a key seen twice goes there too."""
    records: list[tuple[int, R]] = []
    seen: dict[tuple[str, ...], int] = {}
    for line, record in checked:
        key = layout.key(record)
        if key in seen:
            message = f"duplicate row for {', '.join(key)} (first on {unit} {seen[key]})"
            diags.append(Diagnostic(path, line, 0, message))
            continue
        seen[key] = line
        records.append((line, record))
    return records


def records_of(
    source: str, rows: Sequence[Mapping[str, object]], layout: Layout[R]
) -> tuple[list[R], list[str]]:
    """Records from already-parsed rows (an API request): the same checks as a file's rows.

    Problems name `source` and the row's position (1-based).
    """
    numbered: list[Row] = [(i, dict(row), None) for i, row in enumerate(rows, start=1)]
    diags: list[Diagnostic] = []
    checked = _checked(source, numbered, layout, True, diags)
    built = _build(source, checked, layout, diags, unit="row")
    problems = [
        f"{d.path} row {d.line}: {d.message}" if len(rows) > 1 else d.message for d in diags
    ]
    return [r for _, r in built], problems


def reference_problems(
    rows: Sequence[tuple[int, MembershipRecord]],
    known_customers: frozenset[str],
    known_products: frozenset[str],
) -> list[tuple[int, str]]:
    """(line, message) for each membership naming a customer or product the store lacks."""
    out = []
    for line, r in rows:
        if r.customer_id not in known_customers:
            out.append((line, f"unknown customer {r.customer_id!r} (import customers first)"))
        if r.product not in known_products:
            out.append((line, f"unknown product {r.product!r} (import products first)"))
    return out
