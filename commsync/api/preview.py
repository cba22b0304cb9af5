"""Use cases that try an email before it is applied: `preview FILE` (rendered to disk) and
`test-send SLUG` (sent once). Both take the email as the working tree has it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from commsync.api.context import Context
from commsync.catalog.payload import payload_problems
from commsync.config.settings import Settings
from commsync.delivery.transport import OutcomeKind
from commsync.delivery.transports import parse_transport, send_one
from commsync.errors import CommsyncError
from commsync.model import (
    SAMPLE_CUSTOMER,
    BroadcastKind,
    EmailTarget,
    JsonObject,
    SystemEmailFields,
)
from commsync.model.mail import is_address, parse_mailbox
from commsync.render.emails import broadcast_factory, system_email_factory
from commsync.render.message import MessageFactory, RenderError
from commsync.render.notice import notice_fragment, render_notice
from commsync.render.values import customer_values
from commsync.repo.loader import LoadedRepository
from commsync.store.roles import Store


@dataclass(frozen=True, slots=True)
class Preview:
    source: str
    recipient: str
    files: tuple[str, ...]


def effective_fields(loaded: LoadedRepository, store: Store, slug: str) -> SystemEmailFields:
    """The email as the repository has it (so it can be tried before apply), else as installed."""
    for email in loaded.emails:
        if email.slug == slug:
            if email.custom is not None:
                return email.custom
            default = loaded.catalog.defaults.get(slug)
            assert default is not None, "an override without a default is a validation error"
            return default.fields.with_values(email.overrides)
    if slug in loaded.catalog.defaults:
        return loaded.catalog.defaults[slug].fields
    installed = store.system_emails().get(slug)
    if installed is None:
        known = ", ".join(sorted(set(loaded.catalog.defaults) | {e.slug for e in loaded.emails}))
        raise CommsyncError(f"unknown system email {slug!r} (known: {known})")
    return installed.fields


def _payload(
    loaded: LoadedRepository, fields: SystemEmailFields, data: JsonObject | None
) -> JsonObject:
    """The event's example payload, with `data` over it (checked against the event's keys)."""
    event = loaded.catalog.events[fields.event]
    problems = payload_problems(event, data or {}, ())
    if problems:
        raise CommsyncError("--data: " + "; ".join(problems))
    return {**event.mock_payload(), **(data or {})}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n"
        '<body style="font-family:sans-serif;max-width:760px;margin:24px auto">\n'
        f"{body}\n</body></html>\n"
    )


@dataclass(frozen=True, slots=True)
class _Draft:
    """One message to render: how, for whom, with which values."""

    factory: MessageFactory
    address: str
    name: str
    values: dict[str, object]
    recipient: str
    mailbox: str | None = None


def _customer_values(store: Store, settings: Settings, ref: str) -> tuple[dict[str, object], str]:
    found = store.match_customers([ref]).get(ref, ())
    if len(found) != 1:
        problem = "matches several customers" if found else "matches no customer"
        raise CommsyncError(f"customer {ref!r} {problem}")
    record = store.customer(found[0])
    assert record is not None
    values: dict[str, object] = {**customer_values(record, settings.network_context)}
    values["unsubscribe_url"] = settings.unsubscribe_url("preview-token")
    return values, f"customer {record.id} <{record.email}>"


def _system_email_draft(
    loaded: LoadedRepository, store: Store, settings: Settings, slug: str, data: JsonObject | None
) -> _Draft:
    fields = effective_fields(loaded, store, slug)
    payload = _payload(loaded, fields, data)
    recipient = "the event's example payload" + (" with --data" if data else "")
    factory = system_email_factory(store.store_id, settings, loaded.layout, slug, fields)
    if fields.target == EmailTarget.ADMIN:
        admin = parse_mailbox(settings.mail.admins[0]) if settings.mail.admins else None
        name, address = admin or ("", "admin@example.com")
    else:
        address = str(payload.get("customer_user_email") or "customer@example.com")
        name = str(payload.get("customer_name") or "")
    return _Draft(factory, address, name, dict(payload), recipient)


def preview(
    ctx: Context, file: str, out: Path, *, customer: str | None, data: JsonObject | None
) -> Preview:
    """Render FILE for one recipient (a store customer, or sample values) into OUT."""
    loaded = ctx.valid(message="fix the file first (commsync validate)")
    settings = loaded.settings
    assert settings is not None
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
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommsyncError(f"cannot write into {out}: {exc.strerror or exc}") from exc
    store = ctx.store(settings)
    if broadcast is not None:
        values: dict[str, object] = dict(SAMPLE_CUSTOMER)
        recipient = "sample customer (Ada Lovelace)"
        if customer is not None:
            values, recipient = _customer_values(store, settings, customer)
        spec = broadcast.to_desired([]).spec
        if spec.kind == BroadcastKind.NOTICE:
            rendered = render_notice(spec, {k: str(v) for k, v in values.items()})
            target = out / f"{stem}.html"
            _write(target, _page(rendered.heading, notice_fragment(rendered)).encode())
            return Preview(rel, recipient, (str(target),))
        factory = broadcast_factory(store.store_id, settings, loaded.layout, broadcast.id, spec)
        address, name = str(values["customer_user_email"]), str(values["customer_name"])
        draft = _Draft(factory, address, name, values, recipient, settings.unsubscribe_mailbox)
    else:
        assert email is not None
        draft = _system_email_draft(loaded, store, settings, email.slug, data)
    try:
        subject, text, html = draft.factory.render(draft.values)
        built = draft.factory.build(
            draft.address, draft.name, draft.values, draft.mailbox, key="preview"
        )
    except RenderError as exc:
        raise CommsyncError(f"{file}: {exc}") from exc
    files = (out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml")
    _write(files[0], html.encode())
    _write(files[1], f"Subject: {subject}\n\n{text}".encode())
    _write(files[2], built.data)
    return Preview(rel, draft.recipient, tuple(str(f) for f in files))


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CommsyncError(f"cannot write {path}: {exc.strerror or exc}") from exc


def test_send(ctx: Context, slug: str, to: str, data: JsonObject | None) -> str:
    """Render SLUG with its event's mock payload (or `data`) and send it to one address, now.

    Nothing is recorded in the ledger or the stats. Returns where it went.
    """
    if not is_address(to):
        raise CommsyncError(f"{to!r} is not an email address")
    loaded, settings = ctx.usable()
    store = ctx.store(settings)
    fields = effective_fields(loaded, store, slug)
    payload = {**_payload(loaded, fields, data), "customer_user_email": to}
    factory = system_email_factory(store.store_id, settings, loaded.layout, slug, fields)
    # the operator's own address, without the example customer's name; the subject says it is a test
    built = factory.build(to, "", payload, key="test", subject_prefix="[test] ")
    transport = parse_transport(settings.mail.transport, settings.root, ctx.project.env)
    outcome = send_one(transport, settings.mail.from_address, to, built.data)
    if outcome.kind != OutcomeKind.SENT:
        raise CommsyncError(f"the test email was not delivered: {outcome.detail}")
    return transport.describe()


test_send.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
