"""Budgets for templates: how much one operation may produce, how many loop iterations and how
many characters one rendering may take — counted in sizes and iterations, never in seconds.

Every operation a template can use to grow a value is checked *before* it runs when its size
can be known in advance (repetition, padding, joining, replacing, format widths), and its
result is checked after. So `{{ 'a' * 10**9 }}`, `{{ x|center(10**9) }}` or a loop inside a
loop of 100,000 items each stop at once with a clear error, at validate time with sample values
and at send time with real ones, instead of hanging a process or exhausting its memory.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

from commsync.model.limits import Limits

_WIDTHS = re.compile(r"%[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")
_DIGITS = re.compile(r"\d+")
_LOG10_2 = math.log10(2)


class BudgetExceeded(Exception):
    """A template went past one of its limits; the message says which and by how much."""

    def __init__(self, what: str, size: int, limit: int, name: str) -> None:
        super().__init__(
            f"{what} would be {size:,}, more than the limit of {limit:,} (limits.{name})"
        )


@dataclass
class _Rendering:
    """What one rendering has used so far."""

    iterations: int = 0
    output: int = 0


_CURRENT: ContextVar[_Rendering | None] = ContextVar("commsync_rendering", default=None)


def begin() -> object:
    """Start counting a rendering; pass the token to `end`."""
    return _CURRENT.set(_Rendering())


def end(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def _size(value: Any) -> int | None:
    if isinstance(value, str | list | tuple | dict | set | frozenset | bytes):
        return len(value)
    return None


class Budget:
    """The checks, for one set of limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def result(self, value: Any, what: str = "a template value") -> Any:
        size = _size(value)
        if size is not None and size > self.limits.template_result:
            raise BudgetExceeded(what, size, self.limits.template_result, "template_result")
        return value

    def _ahead(self, size: float, what: str) -> None:
        if size > self.limits.template_result:
            raise BudgetExceeded(what, int(size), self.limits.template_result, "template_result")

    # -- operators ---------------------------------------------------------------------------

    def binop(self, operator: str, left: Any, right: Any) -> None:
        """Refuse an operator whose result would be too large, before computing it."""
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) is not None and isinstance(n, int):
                    self._ahead(len(seq) * max(n, 0), "a repetition")
        elif operator == "+":
            a, b = _size(left), _size(right)
            if a is not None and b is not None:
                self._ahead(a + b, "a concatenation")
        elif operator == "**":
            self._power(left, right)
        elif operator == "%" and isinstance(left, str):
            self.format_widths(left, right)

    def _power(self, base: Any, exponent: Any) -> None:
        if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0:
            return
        digits = exponent * math.log10(abs(base)) if abs(base) > 1 else 1
        self._ahead(digits, "the number of digits of a power")

    def format_widths(self, template: str, args: Any) -> None:
        """printf-style widths and precisions (`%999999999s`, `%*s`) within the budget."""
        values = args if isinstance(args, tuple) else (args,)
        for match in _WIDTHS.finditer(template):
            for group in match.groups():
                if group == "*":
                    self._ahead(
                        max((v for v in values if isinstance(v, int)), default=0), "a width"
                    )
                elif group:
                    self._ahead(int(group) if len(group) < 12 else math.inf, "a width")

    def brace_widths(self, template: str, args: Iterable[Any]) -> None:
        """str.format widths (`{:>999999999}`, `{:{w}}`) within the budget."""
        for _, _, spec, _ in string.Formatter().parse(template):
            for digits in _DIGITS.findall(spec or ""):
                self._ahead(int(digits) if len(digits) < 12 else math.inf, "a width")
        for value in args:
            if isinstance(value, int) and not isinstance(value, bool):
                self._ahead(value, "a number given to a format")

    # -- calls ---------------------------------------------------------------------------------

    def call(self, function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Refuse a str method whose result would be too large (padding, joining, replacing)."""
        target = getattr(function, "__wrapped__", function)
        owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
        if not isinstance(owner, str):
            return
        first = args[0] if args else None
        if name in ("ljust", "rjust", "center", "zfill") and isinstance(first, int):
            self._ahead(first, "a padded string")
        elif name == "expandtabs":
            tab = first if isinstance(first, int) else 8
            self._ahead(len(owner) + owner.count("\t") * max(tab, 0), "a string with tabs expanded")
        elif name == "join" and (count := _size(first)) is not None:
            self._ahead(count * len(owner), "a joined string")
        elif name == "replace" and len(args) >= 2:
            self._replaced(owner, args[0], args[1])
        elif name in ("format", "format_map"):
            self.brace_widths(owner, [*args, *kwargs.values()])

    def _replaced(self, text: Any, old: Any, new: Any) -> None:
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            grows = len(new) - len(old)
            if grows > 0:
                count = len(text) + 1 if not old else text.count(old)
                self._ahead(len(text) + count * grows, "a string after replace")

    # -- one rendering -------------------------------------------------------------------------

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Loop iterations, counted across every loop of the rendering."""
        rendering = _CURRENT.get()
        limit = self.limits.template_iterations
        for item in iterable:
            if rendering is not None:
                rendering.iterations += 1
                if rendering.iterations > limit:
                    raise BudgetExceeded(
                        "loop iterations", rendering.iterations, limit, "template_iterations"
                    )
            yield item

    def output(self, value: Any) -> Any:
        """What a rendering writes (blocks and macros included), counted as it is written."""
        rendering = _CURRENT.get()
        if rendering is not None:
            rendering.output += len(str(value))
            limit = self.limits.rendered_chars
            if rendering.output > limit:
                raise BudgetExceeded("the rendered text", rendering.output, limit, "rendered_chars")
        return value


# -- filters -------------------------------------------------------------------------------------


Args = tuple[Any, ...]
Kwargs = Mapping[str, Any]


def _padding(budget: Budget, args: Args, kwargs: Kwargs) -> None:
    width = kwargs.get("width", args[1] if len(args) > 1 else 80)
    if isinstance(width, int):
        budget._ahead(width, "a padded string")


def _indent(budget: Budget, args: Args, kwargs: Kwargs) -> None:
    text = str(args[0]) if args else ""
    width = kwargs.get("width", args[1] if len(args) > 1 else 4)
    unit = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
    budget._ahead(len(text) + (text.count("\n") + 1) * unit, "an indented string")


def _join(budget: Budget, args: Args, kwargs: Kwargs) -> None:
    items = args[1] if len(args) > 1 else None
    sep = kwargs.get("d", args[2] if len(args) > 2 else "")
    count = _size(items)
    if count is not None and isinstance(sep, str):
        budget._ahead(count * len(sep), "a joined string")


def _replace(budget: Budget, args: Args, kwargs: Kwargs) -> None:
    text, old, new = ([*args[1:4], None, None, None])[:3]
    budget._replaced(text, kwargs.get("old", old), kwargs.get("new", new))


def _format(budget: Budget, args: Args, kwargs: Kwargs) -> None:
    if args and isinstance(args[0], str):
        budget.format_widths(args[0], tuple(args[1:]))
        budget.brace_widths("", kwargs.values())


# Checks made before a filter runs. Filters that take the evaluation context (join, replace)
# get it as their first argument.
_BEFORE: dict[str, Callable[[Budget, Args, Kwargs], None]] = {
    "center": _padding,
    "indent": _indent,
    "join": _join,
    "replace": _replace,
    "format": _format,
}


def guard_filter(budget: Budget, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, with its arguments checked before and its result checked after."""
    before = _BEFORE.get(name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(budget, args, kwargs)
        return budget.result(function(*args, **kwargs), f"the result of the {name} filter")

    for attribute in ("jinja_pass_arg", "__name__", "__doc__"):
        if hasattr(function, attribute):
            setattr(guarded, attribute, getattr(function, attribute))
    return guarded


# -- the template tree ---------------------------------------------------------------------------


def _budget_call(name: str, node: nodes.Node) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), [node], [], None, None, lineno=node.lineno)


class Instrument(NodeTransformer):
    """Routes every loop, every output and every `~` concatenation through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _budget_call("budget_loop", node.iter)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            n if isinstance(n, nodes.TemplateData) else _budget_call("budget_output", n)
            for n in node.nodes
        ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _budget_call("budget_result", node)
