"""How big inputs may be and how much work a template may do (`limits:` in commsync.yaml).

Every limit is counted in bytes, characters, items or iterations — never in seconds — so a
breach is found the same way on a fast and a slow machine, at validate time as at send time.
The defaults are far above anything an honest file, payload or template needs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Limits:
    file_bytes: int = 1_048_576  # a file of the repository (YAML, the layout, a catalog file)
    row_bytes: int = 65_536  # one row (line) of a CSV or JSONL data file
    payload_bytes: int = 65_536  # an event payload
    request_bytes: int = 1_048_576  # the body of an HTTP request
    json_depth: int = 32  # nesting of JSON arrays and objects (payloads, rows, requests)
    template_result: int = 100_000  # characters or items one template operation may produce
    template_iterations: int = 10_000  # loop iterations in one rendering of a template
    rendered_chars: int = 1_000_000  # characters one rendering may produce (a body, a notice)
    subject_chars: int = 998  # characters of a rendered subject (one header line)
    requests_in_flight: int = 256  # requests one `serve` process works on at once (503 above)
    feed_cache_bytes: int = 268_435_456  # notices feed responses one `serve` process keeps

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


DEFAULT_LIMITS = Limits()


class LimitExceeded(ValueError):
    """An input or a template went past one of the limits; the message names which."""

    def __init__(self, what: str, size: int, limit: int, name: str) -> None:
        super().__init__(f"{what} is {size:,}, more than the limit of {limit:,} (limits.{name})")
        self.name = name
