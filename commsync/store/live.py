"""The live snapshot a plan diffs against — the broadcasts with their send progress, the system
emails, the delivery workers' last sign of life — read in plain SQL (store/plainsql.py): by
`SqlStore` on every backend and by the light reader on SQLite alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commsync.model import (
    BroadcastKind,
    BroadcastSpec,
    BroadcastStatus,
    EmailStats,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Provenance,
    SendProgress,
    SystemEmailFields,
)
from commsync.store.plainsql import Sql, in_list, json_value, stamp

_CHUNK = 500

_BROADCASTS = (
    'SELECT id, spec, status, applied_hash, managed, path, "commit", author, applied_at'
    " FROM broadcasts"
)
_SYSTEM_EMAILS = (
    "SELECT slug, fields, applied_hash, overrides, base_version, base_fields, managed_path,"
    ' "commit", author, applied_at, sent_count, failed_count, last_sent_at, cancelled_count'
    " FROM system_emails"
)


def read_snapshot(db: Sql, store_id: str) -> LiveSnapshot:
    progress = _progress(db)
    broadcasts = {
        str(row[0]): _live_broadcast(row, progress.get(str(row[0]))) for row in db.rows(_BROADCASTS)
    }
    seen = db.rows("SELECT max(seen_at) FROM workers")[0][0]
    return LiveSnapshot(store_id, broadcasts, read_system_emails(db), stamp(seen))


def read_system_emails(db: Sql) -> dict[str, LiveSystemEmail]:
    return {str(row[0]): _live_system_email(row) for row in db.rows(_SYSTEM_EMAILS)}


def _progress(db: Sql) -> dict[str, SendProgress]:
    """Counts by status of every broadcast send: kept ones for finished sends, counted for the rest."""
    counts: dict[str, dict[str, int]] = {}
    workers: set[str] = set()  # broadcasts the delivery workers send
    open_sends: list[int] = []
    sends = "SELECT id, broadcast_id, status, counts, by_workers FROM sends"
    for send_id, broadcast_id, status, kept, by_workers in db.rows(
        f"{sends} WHERE broadcast_id IS NOT NULL"
    ):
        kept = json_value(kept)
        if by_workers:
            workers.add(str(broadcast_id))
        if status == BroadcastStatus.SENT and isinstance(kept, dict):
            counts[str(broadcast_id)] = {str(k): int(v) for k, v in kept.items()}
        else:
            open_sends.append(int(send_id))
            counts[str(broadcast_id)] = {}
    for i in range(0, len(open_sends), _CHUNK):
        chosen, params = in_list("s.id", open_sends[i : i + _CHUNK])
        sql = (
            "SELECT s.broadcast_id, d.status, count(*) FROM sends s"
            f" JOIN deliveries d ON d.send_id = s.id WHERE {chosen}"
            " GROUP BY s.broadcast_id, d.status"
        )
        for broadcast_id, status, n in db.rows(sql, params):
            counts[str(broadcast_id)][str(status)] = int(n)
    return {
        bid: SendProgress(total=sum(c.values()), by_workers=bid in workers, **c)
        for bid, c in counts.items()
    }


def _provenance(path: Any, commit: Any, author: Any, applied_at: Any) -> Provenance:
    return Provenance(path=path, commit=commit, author=author, applied_at=stamp(applied_at))


def _live_broadcast(row: Sequence[Any], progress: SendProgress | None) -> LiveBroadcast:
    bid, spec_json, status, applied_hash, managed, path, commit, author, applied_at = row
    spec = BroadcastSpec.from_json(json_value(spec_json))
    is_email = spec.kind == BroadcastKind.EMAIL
    if is_email and progress is None:
        progress = SendProgress()
    return LiveBroadcast(
        id=str(bid),
        spec=spec,
        status=BroadcastStatus(status),
        applied_hash=str(applied_hash),
        managed=bool(managed),
        provenance=_provenance(path, commit, author, applied_at),
        progress=progress if is_email else None,
    )


def _live_system_email(row: Sequence[Any]) -> LiveSystemEmail:
    (slug, fields, applied_hash, overrides, base_version, base_fields, path, commit, author) = row[
        :9
    ]
    applied_at, sent, failed, last_sent_at, cancelled = row[9:]
    base = json_value(base_fields)
    return LiveSystemEmail(
        slug=str(slug),
        fields=SystemEmailFields.from_json(json_value(fields)),
        applied_hash=str(applied_hash),
        overrides=tuple(sorted(json_value(overrides))),
        base_version=None if base_version is None else int(base_version),
        base_fields=None if base is None else SystemEmailFields.from_json(base),
        stats=EmailStats(int(sent), int(failed), stamp(last_sent_at), int(cancelled)),
        provenance=_provenance(path, commit, author, applied_at),
    )
