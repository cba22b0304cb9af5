"""Reading a CSV file's rows under a layout: each row checked into its record, or refused with
its line; plain lines through the layout's quick reader (repo/fastrows.py), the rest through the
csv module. repo/records.py defines the layouts and reads whole files."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Generic, TypeVar

from commsync.diagnostics import Diagnostic
from commsync.model import CustomerRecord, MembershipRecord, ProductRecord, SuppressionRecord

R = TypeVar("R", CustomerRecord, ProductRecord, MembershipRecord, SuppressionRecord)


class RowError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Layout(Generic[R]):
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: Callable[[R], tuple[str, ...]]
    build: Callable[[Mapping[str, str]], R]
    # a quick reader of a plain CSV line under a header (repo/fastrows.py), if there is one
    plain: Callable[[list[str]], Callable[[str], R | None] | None] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


class Stop(Exception):
    """A problem that ends the reading of the file (a line too long, bytes not UTF-8)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def csv_checked(
    path: str, lines: Iterator[str], header: list[str], layout: Layout[R], diags: list[Diagnostic]
) -> Iterator[tuple[int, R]]:
    """The records of a CSV file's rows under `header`, read and checked in one loop (the path
    of every row of a large import); a refused row goes to `diags` instead. Plain lines go
    through the layout's quick reader, when it has one; any other line (quoted, spread over
    lines, refused) is read by the csv module as before."""
    plain = layout.plain(header) if layout.plain is not None else None
    if plain is None:
        yield from _csv_rows(path, csv.reader(lines), 2, header, layout, diags)
        return
    start = 2
    for text in lines:
        record = plain(text)
        if record is not None:
            yield start, record
            start += 1
            continue
        reader = csv.reader(chain((text,), lines))  # this row, however many lines it takes
        yield from _csv_rows(path, reader, start, header, layout, diags, one=True)
        start += reader.line_num


def _csv_rows(
    path: str,
    reader: Iterator[list[str]],
    start: int,
    header: list[str],
    layout: Layout[R],
    diags: list[Diagnostic],
    one: bool = False,
) -> Iterator[tuple[int, R]]:
    """The checked records of the csv module's rows, the first starting on line `start` (with
    `one`, only the first row)."""
    build, width = layout.build, len(header)
    try:
        for fields in reader:
            if len(fields) != width:
                diags.append(Diagnostic(path, start, 0, "wrong number of fields for the header"))
            else:
                try:
                    record = build(dict(zip(header, fields, strict=False)))  # width checked
                except RowError as exc:
                    diags.append(Diagnostic(path, start, 0, str(exc)))
                else:
                    yield start, record
            if one:
                return
            start = reader.line_num + 2  # type: ignore[attr-defined]
    except csv.Error as exc:  # a field beyond the csv module's limit, a NUL byte
        raise Stop(start, f"unreadable CSV: {exc}") from None
