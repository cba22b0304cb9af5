"""The compiled schema check (fastjsonschema) never accepts a document jsonschema refuses.

It is only a shortcut for valid documents (`config/schema.py`): whatever it refuses goes to
jsonschema, which writes the diagnostics. So the property that matters is one way — accepted by
the shortcut implies valid — checked here on every example file and on documents built from
them by changing, adding and removing values of every JSON type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commsync.config.schema import SCHEMA_FILES, _fast, fast_valid, validator

ROOT = Path(__file__).resolve().parents[1]
FAST = [name for name in SCHEMA_FILES if _fast(name) is not None]


def _samples() -> dict[str, list[Any]]:
    """Every example document, by the schema it is checked against."""
    by_schema: dict[str, list[Any]] = {name: [] for name in FAST}
    for path in sorted(ROOT.glob("examples/**/*.yaml")) + sorted(ROOT.glob("commsync/**/*.yaml")):
        rel = path.relative_to(ROOT).as_posix()
        if "/broadcasts/" in rel:
            name = "broadcast.schema.json"
        elif rel.endswith("commsync.yaml"):
            name = "commsync.schema.json"
        elif "/emails/" in rel and "catalog" not in rel:
            name = "email.schema.json"
        else:
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            by_schema[name].append(doc)
    return by_schema


SAMPLES = _samples()
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


def test_there_are_examples_for_every_compiled_schema() -> None:
    assert {"broadcast.schema.json", "commsync.schema.json", "email.schema.json"} <= set(FAST)
    for name in ("broadcast.schema.json", "commsync.schema.json", "email.schema.json"):
        assert SAMPLES[name], name


def test_the_shortcut_agrees_on_every_example() -> None:
    for name, docs in SAMPLES.items():
        for doc in docs:
            assert fast_valid(doc, name) == validator(name).is_valid(doc), (name, doc)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from([n for n in FAST if SAMPLES.get(n)]))
    doc = dict(draw(st.sampled_from(SAMPLES[name])))
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(doc)
        change = draw(st.sampled_from(["replace", "add", "remove", "nest"]))
        if change == "replace" and keys:
            doc[draw(st.sampled_from(keys))] = draw(JSON)
        elif change == "add":
            doc[draw(st.text(max_size=12))] = draw(JSON)
        elif change == "remove" and keys:
            doc.pop(draw(st.sampled_from(keys)))
        elif change == "nest" and keys:
            key = draw(st.sampled_from(keys))
            if isinstance(doc[key], dict) and doc[key]:
                inner = dict(doc[key])
                inner[draw(st.sampled_from(sorted(inner)))] = draw(JSON)
                doc[key] = inner
    return name, doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_the_shortcut_never_accepts_what_jsonschema_refuses(case: tuple[str, Any]) -> None:
    name, doc = case
    if fast_valid(doc, name):
        errors = [e.message for e in validator(name).iter_errors(doc)]
        assert not errors, (name, doc, errors)
