"""Safe YAML loading that remembers where every key and value came from.

PyYAML's composer gives nodes with marks; we turn them into plain JSON-like values ourselves so
that (a) duplicate keys are errors, (b) scalars resolve like YAML 1.2's core schema (`yes`, `on`,
`1:30` and timestamps stay strings, so the JSON Schema sees what the operator wrote), and (c) each
JSON pointer maps back to a line and column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from commsync.diagnostics import Diagnostic

try:  # libyaml is much faster; the pure-Python loader gives identical nodes.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]

_MAX_NODES = 100_000
_MAX_DIGITS = 64  # no setting is a number that long; int() would refuse past 4,300 digits
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_STD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:merge",
    "tag:yaml.org,2002:value",
}


@dataclass(frozen=True, slots=True)
class Mark:
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class ScalarSpan:
    """Where a string scalar's text starts, and how its lines map back to the file."""

    style: str  # "" plain, "'" / '"' quoted, "|" literal, ">" folded
    line: int
    col: int
    block_indent: int  # column (1-based) of the block scalar's content; 0 if not a block


@dataclass(frozen=True, slots=True)
class YamlDoc:
    path: str
    value: Json
    marks: Mapping[str, Mark]
    key_marks: Mapping[str, Mark]
    spans: Mapping[str, ScalarSpan] = field(default_factory=dict)

    def mark(self, pointer: str, *, key: bool = False) -> Mark:
        """The mark of `pointer` (its key's mark when `key`), else of its nearest ancestor."""
        table = self.key_marks if key else self.marks
        probe = pointer
        while True:
            if probe in table:
                return table[probe]
            if probe in self.marks:
                return self.marks[probe]
            if not probe:
                return Mark(1, 1)
            probe = probe.rsplit("/", 1)[0]

    def locate(self, pointer: str, tline: int, tcol: int) -> Mark:
        """File position of (line, col) inside the string scalar at `pointer` (both 1-based)."""
        span = self.spans.get(pointer)
        if span is None:
            return self.mark(pointer)
        if span.style == "|":
            return Mark(span.line + tline, span.block_indent + tcol - 1)
        if tline == 1 and span.style in ("", "'", '"'):
            return Mark(span.line, span.col + tcol - 1 + (1 if span.style else 0))
        return Mark(span.line, span.col)

    def diag(self, pointer: str, message: str, *, key: bool = False) -> Diagnostic:
        m = self.mark(pointer, key=key)
        return Diagnostic(self.path, m.line, m.col, message, "error", pointer)


def as_list(value: Json) -> list[Json]:
    return value if isinstance(value, list) else []


def escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class _Converter:
    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.marks: dict[str, Mark] = {}
        self.key_marks: dict[str, Mark] = {}
        self.spans: dict[str, ScalarSpan] = {}
        self.diagnostics: list[Diagnostic] = []
        self.count = 0

    def error(self, node: yaml.Node, message: str, pointer: str) -> None:
        m = node.start_mark
        self.diagnostics.append(
            Diagnostic(self.path, m.line + 1, m.column + 1, message, "error", pointer)
        )

    def convert(self, node: yaml.Node, pointer: str, depth: int = 0) -> Json:
        self.count += 1
        if self.count > _MAX_NODES or depth > 64:
            raise _TooBig(node)
        self.marks[pointer] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in _STD_TAGS:  # report it, then read the node as if untagged
            self.error(node, f"unsupported YAML tag {node.tag!r}", pointer)
            if isinstance(node, yaml.ScalarNode):
                node.tag = "tag:yaml.org,2002:str"
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, pointer, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(v, f"{pointer}/{i}", depth + 1) for i, v in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, pointer)

    def _mapping(self, node: yaml.MappingNode, pointer: str, depth: int) -> dict[str, Json]:
        out: dict[str, Json] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, "keys must be plain strings", pointer)
                continue
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.error(
                    key_node, "merge keys (<<) are not supported; write the keys out", pointer
                )
                continue
            child = f"{pointer}/{escape_pointer(key)}"
            if key in first_seen:
                self.error(
                    key_node,
                    f"duplicate key {key!r} (first defined on line {first_seen[key]})",
                    child,
                )
                continue
            first_seen[key] = key_node.start_mark.line + 1
            self.key_marks[child] = Mark(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            out[key] = self.convert(value_node, child, depth + 1)
        return out

    def _scalar(self, node: yaml.ScalarNode, pointer: str) -> Json:
        value: str = node.value
        tag = node.tag.rsplit(":", 1)[-1]
        if node.style or tag == "str":  # quoted, block or plainly a string
            self._record_span(node, pointer)
            return value
        # PyYAML resolves by YAML 1.1; narrow to the 1.2 core schema so `yes`, `0x1F`, `1:30`
        # and dates stay the strings the operator wrote.
        if tag == "null":
            return None
        if tag == "bool" and (value in _TRUE or value in _FALSE):
            return value in _TRUE
        if tag == "int" and _INT.fullmatch(value):
            if len(value.lstrip("+-")) > _MAX_DIGITS:
                self.error(node, f"a number of more than {_MAX_DIGITS} digits", pointer)
                return value
            return int(value)
        if tag == "float" and _FLOAT.fullmatch(value):
            return float(value)
        self._record_span(node, pointer)
        return value

    def _record_span(self, node: yaml.ScalarNode, pointer: str) -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        style = node.style or ""
        indent = 0
        if style in ("|", ">"):
            indent = self._block_indent(node.start_mark.line + 1)
        self.spans[pointer] = ScalarSpan(style, line, col, indent)

    def _block_indent(self, first_content_line: int) -> int:
        for text in self.lines[first_content_line:]:
            if text.strip():
                return len(text) - len(text.lstrip(" ")) + 1
        return 1


class _TooBig(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.splitlines()
    return lines[line][col] if line < len(lines) and col < len(lines[line]) else ""


def _problem_diagnostic(path: str, exc: yaml.YAMLError, text: str) -> Diagnostic:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "invalid YAML"
        if _char_at(text, mark.line, mark.column) == "\t":
            problem = "tab character: YAML indentation must use spaces"
        context = f" ({exc.context})" if exc.context else ""
        return Diagnostic(path, mark.line + 1, mark.column + 1, f"invalid YAML: {problem}{context}")
    return Diagnostic(path, 1, 1, f"invalid YAML: {exc}")


def _decode(path: str, data: bytes) -> tuple[str | None, Diagnostic | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Diagnostic(path, line, col, "file is not valid UTF-8")


def load_yaml(path: str, data: bytes) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse one YAML document; return it with positions, or the diagnostics that stop it."""
    text, problem = _decode(path, data)
    if text is None:
        return None, [problem] if problem else []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        return None, [_problem_diagnostic(path, exc, text)]
    if not nodes:
        return None, [Diagnostic(path, 1, 1, "file is empty; expected a mapping of keys")]
    if len(nodes) > 1:
        m = nodes[1].start_mark
        return None, [Diagnostic(path, m.line + 1, m.column + 1, "one YAML document per file")]
    converter = _Converter(path, text.splitlines())
    try:
        value = converter.convert(nodes[0], "")
    except _TooBig as exc:
        m = exc.node.start_mark
        msg = "document too large or too deeply nested (alias expansion?)"
        return None, [Diagnostic(path, m.line + 1, m.column + 1, msg)]
    doc = YamlDoc(path, value, converter.marks, converter.key_marks, converter.spans)
    return doc, converter.diagnostics
