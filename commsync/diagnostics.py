"""Diagnostics: one finding in an input file, and its renderings (text, JSON, GitHub annotations)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """A finding at `path:line:col` (1-based; path relative to the project root; col 0 = none)."""

    path: str
    line: int
    col: int
    message: str
    severity: Severity = "error"
    pointer: str = ""

    def render(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.col else f"{self.path}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=lambda d: (d.path, d.line, d.col, d.message))


def render_text(diagnostics: Sequence[Diagnostic]) -> str:
    return "".join(d.render() + "\n" for d in diagnostics)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    doc = {
        "format_version": 1,
        "errors": sum(1 for d in diagnostics if d.severity == "error"),
        "warnings": sum(1 for d in diagnostics if d.severity == "warning"),
        "diagnostics": [
            {
                "path": d.path,
                "line": d.line,
                "col": d.col,
                "severity": d.severity,
                "message": d.message,
                "pointer": d.pointer,
            }
            for d in diagnostics
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic], path_prefix: str = "") -> str:
    """GitHub Actions workflow commands; `path_prefix` makes paths relative to the git root."""
    lines = []
    for d in diagnostics:
        props = f"file={_escape_property(path_prefix + d.path)},line={d.line}"
        props += f",col={d.col}" if d.col else ""
        lines.append(f"::{d.severity} {props}::{_escape_data(d.message)}\n")
    return "".join(lines)
