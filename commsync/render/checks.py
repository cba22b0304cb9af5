"""Template checks of YAML string values, reported at the file's own line and column."""

from __future__ import annotations

import re
from collections.abc import Mapping

from commsync.config.yamlpos import YamlDoc
from commsync.diagnostics import Diagnostic
from commsync.model import JsonValue
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.render.sandbox import check_template, trial_render

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, CR and LF aside


def template_diagnostics(
    doc: YamlDoc,
    pointer: str,
    source: str,
    allowed: frozenset[str],
    context: str,
    sample: Mapping[str, JsonValue],
    limits: Limits = DEFAULT_LIMITS,
) -> list[Diagnostic]:
    """Diagnostics for the template at `pointer`, mapped from template lines to file lines.

    A template that passes the static checks is rendered once with `sample` values, so what the
    sandbox would refuse (or what would fail, or go past its limits) at send time is reported
    now. A subject (`/subject`) must also fit `limits.subject_chars`.
    """
    out = []
    max_chars = limits.subject_chars if pointer == "/subject" else None
    issues = check_template(source, allowed, context) or trial_render(
        source, tuple(sorted(sample.items())), limits, max_chars
    )
    for issue in issues:
        mark = doc.locate(pointer, issue.line, issue.col)
        out.append(Diagnostic(doc.path, mark.line, mark.col, issue.message, "error", pointer))
    return out


def subject_diagnostics(
    doc: YamlDoc, pointer: str, subject: str, limits: Limits = DEFAULT_LIMITS
) -> list[Diagnostic]:
    """A subject is one header line: CR or LF would let it inject headers."""
    if len(subject) > limits.subject_chars:
        message = (
            f"subject is {len(subject):,} characters, more than the limit of "
            f"{limits.subject_chars:,} (limits.subject_chars)"
        )
        return [doc.diag(pointer, message)]
    if "\r" not in subject and "\n" not in subject and _CONTROL.search(subject):
        return [doc.diag(pointer, "subject must be plain text: it contains a control character")]
    if "\r" in subject or "\n" in subject:
        hint = (
            " (a | or > block ends with one; use a quoted string)" if subject.endswith("\n") else ""
        )
        return [doc.diag(pointer, f"subject must be one line: it contains a CR or LF{hint}")]
    return []
