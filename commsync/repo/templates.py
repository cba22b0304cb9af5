"""Template checks of YAML string values, reported at the file's own line and column."""

from __future__ import annotations

from commsync.diagnostics import Diagnostic
from commsync.render.sandbox import check_template
from commsync.repo.yamlpos import YamlDoc


def template_diagnostics(
    doc: YamlDoc, pointer: str, source: str, allowed: frozenset[str], context: str
) -> list[Diagnostic]:
    """Diagnostics for the template at `pointer`, mapped from template lines to file lines."""
    out = []
    for issue in check_template(source, allowed, context):
        mark = doc.locate(pointer, issue.line, issue.col)
        out.append(Diagnostic(doc.path, mark.line, mark.col, issue.message, "error", pointer))
    return out


def subject_diagnostics(doc: YamlDoc, pointer: str, subject: str) -> list[Diagnostic]:
    """A subject is one header line: CR or LF would let it inject headers."""
    if "\r" in subject or "\n" in subject:
        hint = (
            " (a | or > block ends with one; use a quoted string)" if subject.endswith("\n") else ""
        )
        return [doc.diag(pointer, f"subject must be one line: it contains a CR or LF{hint}")]
    return []
