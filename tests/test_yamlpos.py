"""The position-aware YAML loader: YAML 1.2 scalars, positions, duplicates, safety."""

from __future__ import annotations

import pytest

from commsync.config.yamlpos import Mark, load_yaml


def _value(text: str) -> object:
    doc, problems = load_yaml("x.yaml", text.encode())
    assert doc is not None and problems == [], problems
    return doc.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: yes", "yes"),
        ("a: on", "on"),
        ("a: No", "No"),
        ("a: true", True),
        ("a: False", False),
        ("a: 2026-12-01", "2026-12-01"),
        ("a: 2026-12-01T09:00:00+01:00", "2026-12-01T09:00:00+01:00"),
        ("a: 1:30", "1:30"),
        ("a: 0x1F", "0x1F"),
        ("a: 1_000", "1_000"),
        ("a: 42", 42),
        ("a: -7", -7),
        ("a: 2.5", 2.5),
        ("a: '42'", "42"),
        ("a: ~", None),
        ("a:", None),
        ("a: !!str 12", "12"),
        ("a: .inf", ".inf"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert _value(text) == {"a": expected}


def test_positions_of_keys_values_and_list_items() -> None:
    doc, _ = load_yaml("x.yaml", b"kind: notice\ntargets:\n  products: [pro, agency]\n")
    assert doc is not None
    assert doc.mark("/kind") == Mark(1, 7)
    assert doc.mark("/kind", key=True) == Mark(1, 1)
    assert doc.mark("/targets/products/1") == Mark(3, 19)
    assert doc.mark("/targets/nope/deeper") == doc.mark("/targets")


def test_locating_inside_block_and_quoted_scalars() -> None:
    text = (
        b'subject: "Hi {{ x }}"\ncontent: |\n    first\n    second {{ y }}\nfolded: >\n  a\n  b\n'
    )
    doc, _ = load_yaml("x.yaml", text)
    assert doc is not None
    assert doc.locate("/subject", 1, 4) == Mark(1, 14)  # inside the quotes
    assert doc.locate("/content", 2, 8) == Mark(4, 12)  # literal block: exact line and column
    assert doc.locate("/folded", 2, 1) == Mark(5, 9)  # folded: the scalar's start


def test_anchors_work_and_merge_keys_are_refused() -> None:
    assert _value("a: &x [1, 2]\nb: *x") == {"a": [1, 2], "b": [1, 2]}
    _, problems = load_yaml("x.yaml", b"base: &b {k: 1}\nother:\n  <<: *b\n")
    assert [p.message for p in problems] == [
        "merge keys (<<) are not supported; write the keys out"
    ]


def test_recursive_aliases_are_refused_not_followed() -> None:
    doc, problems = load_yaml("x.yaml", b"a: &a [*a]\n")
    assert doc is None and "too large or too deeply nested" in problems[0].message


def test_non_mapping_keys_are_errors() -> None:
    _, problems = load_yaml("x.yaml", b"? [a, b]\n: 1\n")
    assert problems[0].message == "keys must be plain strings"
