"""Use case: `commsync preview FILE` — what a file's email or notice looks like, written to disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from commsync.api.apply import broadcast_factory
from commsync.api.core import Project, load, store_session
from commsync.api.events import EventService, _effective
from commsync.catalog.payload import payload_problems
from commsync.errors import CommsyncError, ValidationFailed
from commsync.http.feed import customer_values
from commsync.model import SAMPLE_CUSTOMER, JsonObject, LiveSystemEmail
from commsync.render.message import RenderError
from commsync.render.notice import notice_fragment, render_notice
from commsync.settings import parse_mailbox


@dataclass(frozen=True, slots=True)
class Preview:
    source: str
    recipient: str
    files: tuple[str, ...]


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n"
        '<body style="font-family:sans-serif;max-width:760px;margin:24px auto">\n'
        f"{body}\n</body></html>\n"
    )


def preview(
    project: Project,
    file: str,
    out: Path,
    *,
    customer: str | None = None,
    data: JsonObject | None = None,
) -> Preview:
    """Render FILE for one recipient (a store customer, or sample values) into OUT."""
    loaded = load(project)
    settings = loaded.settings
    if settings is None or not loaded.ok:
        raise ValidationFailed(loaded.diagnostics, "fix the file first (commsync validate)")
    rel = Path(file).as_posix().removeprefix("./")
    broadcast = next((b for b in loaded.broadcasts if b.origin.path == rel), None)
    email = next((e for e in loaded.emails if e.origin.path == rel), None)
    if broadcast is None and email is None:
        raise CommsyncError(f"{file}: not a broadcast or system email file of this repository")
    if broadcast is not None and data is not None:
        raise CommsyncError("--data is for system emails; a broadcast takes --customer")
    if email is not None and customer is not None:
        raise CommsyncError("--customer is for broadcasts; a system email takes --data")
    stem = Path(rel).stem
    out.mkdir(parents=True, exist_ok=True)
    with store_session(settings.store_url) as store:
        values: dict[str, object]
        if broadcast is not None:
            recipient = "sample customer (Ada Lovelace)"
            values = dict(SAMPLE_CUSTOMER)
            if customer is not None:
                found = store.match_customers([customer]).get(customer, ())
                if len(found) != 1:
                    raise CommsyncError(
                        f"customer {customer!r} "
                        + ("matches several customers" if found else "matches no customer")
                    )
                record = store.customer(found[0])
                assert record is not None
                values = {**customer_values(record, settings)}
                values["unsubscribe_url"] = settings.unsubscribe_url("preview-token")
                recipient = f"customer {record.id} <{record.email}>"
            address = str(values["customer_user_email"])
            name = str(values["customer_name"])
            spec = broadcast.to_desired([]).spec
            if spec.kind == "notice":
                rendered = render_notice(spec, {k: str(v) for k, v in values.items()})
                target = out / f"{stem}.html"
                target.write_text(_page(rendered.heading, notice_fragment(rendered)), "utf-8")
                return Preview(rel, recipient, (str(target),))
            factory = broadcast_factory(store.store_id, settings, loaded.layout, broadcast.id, spec)
            mailbox = settings.unsubscribe_mailbox
        else:
            assert email is not None
            fields = _effective(loaded, store, email.slug)
            event = loaded.catalog.events[fields.event]
            problems = payload_problems(event, data or {}, ())
            if problems:
                raise CommsyncError("--data: " + "; ".join(problems))
            payload = {**event.mock_payload(), **(data or {})}
            recipient = "the event's example payload" + (" with --data" if data else "")
            live = LiveSystemEmail(email.slug, fields, fields.fields_hash())
            factory = EventService(store, settings, loaded.catalog, loaded.layout).factory(live)
            values = dict(payload)
            if fields.target == "admin":
                admin = parse_mailbox(settings.mail.admins[0]) if settings.mail.admins else None
                name, address = admin or ("", "admin@example.com")
            else:
                address = str(payload.get("customer_user_email") or "customer@example.com")
                name = str(payload.get("customer_name") or "")
            mailbox = None
        try:
            subject, text, html = factory.render(values)
            built = factory.build(address, name, values, mailbox, key="preview")
        except RenderError as exc:
            raise CommsyncError(f"{file}: {exc}") from exc
    files = (out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml")
    files[0].write_text(html, encoding="utf-8")
    files[1].write_text(f"Subject: {subject}\n\n{text}", encoding="utf-8")
    files[2].write_bytes(built.data)
    return Preview(rel, recipient, tuple(str(f) for f in files))


def read_data(text: str) -> JsonObject:
    """--data: inline JSON."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommsyncError(f"--data is not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise CommsyncError("--data must be a JSON object of the event's keys")
    return value
