"""The Jinja2 sandbox every template runs in, and a static check of templates before they run.

Templates see only their placeholders: the sandbox is immutable, undefined names raise
(StrictUndefined) and the environment has no globals, loaders or extensions. Every rendering
runs within the budgets of `limits:` (render/budget.py).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateAssertionError,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.render import budget as budgets
from commsync.render.budget import Budget, BudgetExceeded, Instrument

_JINJA_MARKERS = ("{{", "{%", "{#")
_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class _CountedTemplate(Template):
    """A template whose every rendering is counted against the environment's budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = budgets.begin()
        try:
            return super().render(*args, **kwargs)
        finally:
            budgets.end(token)


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every growth of a value and every loop within `limits`."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})
    template_class = _CountedTemplate

    def __init__(self, limits: Limits, autoescape: bool) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
        )
        self.globals.clear()
        self.budget = Budget(limits)
        self.filters = {
            name: budgets.guard_filter(self.budget, name, f) for name, f in self.filters.items()
        }

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        instrumented: nodes.Template = Instrument().visit(tree)
        return instrumented

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.budget.binop(operator, left, right)
        return self.budget.result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return __self.budget.result(result, "the result of a call")

    # Called by instrumented templates (render/budget.py `Instrument`).
    def budget_loop(self, iterable: Any) -> Any:
        return self.budget.loop(iterable)

    def budget_output(self, value: Any) -> Any:
        return self.budget.output(value)

    def budget_result(self, value: Any) -> Any:
        return self.budget.result(value, "a concatenation")


@cache
def environment(autoescape: bool = False, limits: Limits = DEFAULT_LIMITS) -> SandboxEnvironment:
    return SandboxEnvironment(limits, autoescape)


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """A problem at (line, col) of a template's own text (1-based)."""

    line: int
    col: int
    message: str


def _column(source_line: str, token: str) -> int:
    match = re.search(rf"(?<![\w]){re.escape(token)}(?!\w)", source_line)
    return match.start() + 1 if match else 1


def _unsafe_access(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        value = node.arg.value
        if isinstance(value, str) and value.startswith("_"):
            return value
    return None


def _node_issues(ast: nodes.Template, lines: list[str]) -> Iterator[TemplateIssue]:
    env = environment()

    def at(node: nodes.Node, token: str, message: str) -> TemplateIssue:
        lineno = node.lineno
        text = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        return TemplateIssue(lineno, _column(text, token), message)

    for node in ast.find_all(nodes.Node):
        attr = _unsafe_access(node)
        if attr is not None:
            yield at(node, attr, f"the template sandbox refuses access to {attr!r}")
        elif isinstance(node, nodes.Filter) and node.name not in env.filters:
            yield at(node, node.name, f"unknown filter {node.name!r}")
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            yield at(node, node.name, f"unknown test {node.name!r}")
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            yield TemplateIssue(node.lineno, 1, "templates cannot include, import or extend others")


def _undeclared(ast: nodes.Template) -> set[str]:
    try:
        return meta.find_undeclared_variables(ast)
    except TemplateAssertionError:  # an unknown filter, already reported: fall back to names
        stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx != "load"}
        return {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"} - stored


def _unknown_message(name: str, allowed: frozenset[str], context: str) -> str:
    close = difflib.get_close_matches(name, sorted(allowed), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"available: {', '.join(sorted(allowed))}"
    return f"unknown placeholder {name!r} for {context} ({hint})"


def _placeholder_issues(
    ast: nodes.Template, lines: list[str], allowed: frozenset[str], context: str
) -> Iterator[TemplateIssue]:
    unknown = _undeclared(ast) - allowed
    seen: set[str] = set()
    for node in ast.find_all(nodes.Name):
        if node.ctx != "load" or node.name not in unknown or node.name in seen:
            continue
        seen.add(node.name)
        text = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
        message = _unknown_message(node.name, allowed, context)
        yield TemplateIssue(node.lineno, _column(text, node.name), message)


def simple_placeholders(source: str) -> list[tuple[str, int]] | None:
    """(name, offset) of every `{{ name }}` when that is all the template does, else None.

    Most templates only substitute placeholders; for them this is exact and skips the parser.
    """
    if "{%" in source or "{#" in source:
        return None
    found = []
    start = source.find("{{")
    while start != -1:
        match = _SIMPLE.match(source, start)
        if match is None:
            return None
        found.append((match.group(1), match.start(1)))
        start = source.find("{{", match.end())
    return found


def substitute(source: str, values: Mapping[str, object]) -> str | None:
    """What the sandbox renders for a template that only substitutes `{{ name }}` placeholders,
    without compiling it; None when it does more, or names a value that is not there (the
    sandbox would refuse it: StrictUndefined)."""
    names = simple_placeholders(source)
    if names is None or any(name not in values for name, _ in names):
        return None
    return _SIMPLE.sub(lambda m: str(values[m.group(1)]), source)


def _simple_issues(
    names: list[tuple[str, int]], source: str, allowed: frozenset[str], context: str
) -> tuple[TemplateIssue, ...]:
    issues, seen = [], set()
    for name, offset in names:
        if name in allowed or name in seen:
            continue
        seen.add(name)
        line = source.count("\n", 0, offset) + 1
        col = offset - (source.rfind("\n", 0, offset) + 1) + 1
        issues.append(TemplateIssue(line, col, _unknown_message(name, allowed, context)))
    return tuple(issues)


@lru_cache(maxsize=4096)
def check_template(source: str, allowed: frozenset[str], context: str) -> tuple[TemplateIssue, ...]:
    """Syntax errors, unknown placeholders/filters and sandbox violations, without rendering."""
    if not any(marker in source for marker in _JINJA_MARKERS):
        return ()
    simple = simple_placeholders(source)
    if simple is not None:
        return _simple_issues(simple, source, allowed, context)
    return _parsed_issues(source, allowed, context)


def _parsed_issues(source: str, allowed: frozenset[str], context: str) -> tuple[TemplateIssue, ...]:
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError as exc:
        return (TemplateIssue(exc.lineno or 1, 1, f"template syntax error: {exc.message}"),)
    except (ValueError, RecursionError) as exc:  # a number too long for int(), nesting too deep
        return (TemplateIssue(1, 1, f"template syntax error: {type(exc).__name__}: {exc}"),)
    lines = source.splitlines()
    issues = [*_node_issues(ast, lines), *_placeholder_issues(ast, lines, allowed, context)]
    return tuple(sorted(issues, key=lambda i: (i.line, i.col, i.message)))


def placeholders(source: str) -> frozenset[str]:
    """The placeholder names a (syntactically valid) template reads."""
    if not any(marker in source for marker in _JINJA_MARKERS):
        return frozenset()
    simple = simple_placeholders(source)
    if simple is not None:
        return frozenset(name for name, _ in simple)
    return frozenset(_undeclared(environment().parse(source)))


def _template_line(exc: BaseException) -> int:
    """The template line Jinja2 mapped the failing frame to (its frames are named <template>)."""
    line, tb = 1, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@lru_cache(maxsize=1024)
def trial_render(
    source: str,
    sample: tuple[tuple[str, object], ...],
    limits: Limits = DEFAULT_LIMITS,
    max_chars: int | None = None,
) -> tuple[TemplateIssue, ...]:
    """Render once in the sandbox with sample values: what would fail at send time fails here.

    For templates beyond plain `{{ name }}` substitution (those cannot fail at run time, and
    their size is the size of their values). With `max_chars`, a longer result is an issue
    (a subject).
    """
    if simple_placeholders(source) is not None:
        return ()
    try:
        rendered = environment(False, limits).from_string(source).render(dict(sample))
    except SecurityError as exc:
        return (TemplateIssue(_template_line(exc), 1, f"the template sandbox refuses this: {exc}"),)
    except BudgetExceeded as exc:
        message = f"this template goes past its limits with sample values: {exc}"
        return (TemplateIssue(_template_line(exc), 1, message),)
    except Exception as exc:
        message = (
            f"this template fails when rendered with sample values: {type(exc).__name__}: {exc}"
        )
        return (TemplateIssue(_template_line(exc), 1, message),)
    if max_chars is not None and len(rendered) > max_chars:
        message = (
            f"rendered with sample values it is {len(rendered):,} characters, more than the "
            f"limit of {max_chars:,} (limits.subject_chars)"
        )
        return (TemplateIssue(1, 1, message),)
    return ()
