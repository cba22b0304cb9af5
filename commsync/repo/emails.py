"""System email files (emails/<slug>.yaml): overrides of registered defaults, or custom emails."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from commsync.config.files import strip_yaml_suffix
from commsync.config.schema import invalid_keys, schema_diagnostics
from commsync.config.yamlpos import YamlDoc, load_yaml
from commsync.diagnostics import Diagnostic
from commsync.model import (
    NETWORK_CONTEXT,
    SAMPLE_NETWORK,
    Catalog,
    DesiredSystemEmail,
    EmailTarget,
    JsonValue,
    Origin,
    SystemEmailFields,
)
from commsync.model.durations import canonical
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.model.mail import is_address
from commsync.render.checks import subject_diagnostics, template_diagnostics
from commsync.render.sandbox import placeholders

EMAILS_DIR = "emails"
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
_CUSTOM_REQUIRED = ("event", "target", "subject", "content")


@dataclass(frozen=True, slots=True)
class EmailContext:
    """What system-email checks need beyond the file: the catalog and whether admins exist."""

    catalog: Catalog
    has_admins: bool
    limits: Limits = DEFAULT_LIMITS


def _normalise(value: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    out = {k: v for k, v in value.items() if k != "email"}
    if "delay" in out:
        out["delay"] = canonical(out["delay"])
    sender = out.get("sender")
    if isinstance(sender, dict):
        out["sender"] = {"name": sender.get("name"), "email": sender.get("email")}
    return out


def _sender_diagnostics(doc: YamlDoc, sender: object) -> list[Diagnostic]:
    if not isinstance(sender, dict):
        return []
    out = []
    address, name = sender.get("email"), sender.get("name")
    if isinstance(address, str) and not is_address(address):
        out.append(doc.diag("/sender/email", f"{address!r} is not an email address"))
    if isinstance(name, str) and ("\r" in name or "\n" in name):
        out.append(doc.diag("/sender/name", "sender name must be one line: it contains a CR or LF"))
    return out


def _event_diagnostics(
    doc: YamlDoc, value: Mapping[str, JsonValue], fields: SystemEmailFields, ctx: EmailContext
) -> list[Diagnostic]:
    event = ctx.catalog.events.get(fields.event)
    if event is None:
        # a typo, not a different event that shares a suffix (customer_created is not
        # domain_created): suggest only a close match, else list them all
        events = sorted(ctx.catalog.events)
        close = difflib.get_close_matches(fields.event, events, n=1, cutoff=0.8)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"known: {', '.join(sorted(ctx.catalog.events))}"
        )
        return [doc.diag("/event", f"unknown event {fields.event!r} ({hint})")]
    allowed = event.key_names | frozenset(NETWORK_CONTEXT)
    out: list[Diagnostic] = []
    for name in ("subject", "content"):
        text = str(getattr(fields, name))
        if name in value:
            sample = {**event.mock_payload(), **SAMPLE_NETWORK}
            out += template_diagnostics(
                doc, f"/{name}", text, allowed, f"event {event.slug}", sample, ctx.limits
            )
            continue
        missing = sorted(placeholders(text) - allowed)
        if missing:  # the default's own text, moved to another event by an `event:` override
            msg = f"the default {name} uses {', '.join(missing)}, which event {event.slug} does not provide"
            out.append(doc.diag("/event", msg))
    return out


def _admin_warnings(
    doc: YamlDoc, value: Mapping[str, JsonValue], fields: SystemEmailFields
) -> list[Diagnostic]:
    out = []
    for key, applies in (
        ("target", fields.target == EmailTarget.ADMIN),
        ("send_copy_to_admin", fields.send_copy_to_admin),
    ):
        if applies and fields.active:
            mark = doc.mark(f"/{key}" if key in value else "", key=True)
            msg = f"{key} sends to mail.admins, which is empty: nobody will receive it"
            out.append(Diagnostic(doc.path, mark.line, mark.col, msg, "warning", f"/{key}"))
    return out


def _effective(
    doc: YamlDoc, slug: str, overrides: dict[str, JsonValue], ctx: EmailContext
) -> tuple[SystemEmailFields | None, list[Diagnostic]]:
    default = ctx.catalog.defaults.get(slug)
    if default is not None:
        return default.fields.with_values(overrides), []
    written = doc.value if isinstance(doc.value, dict) else {}
    missing = [k for k in _CUSTOM_REQUIRED if k not in written]
    if missing:
        why = f"{slug!r} is not a registered default, so it is a custom email and needs event, target, subject and content"
        return None, [doc.diag("", f"missing required key {k!r}: {why}") for k in missing]
    if any(k not in overrides for k in _CUSTOM_REQUIRED):  # present but invalid: already reported
        return None, []
    return SystemEmailFields.from_json(overrides), []


def parse_system_email(
    path: str, data: bytes, ctx: EmailContext
) -> tuple[DesiredSystemEmail | None, list[Diagnostic]]:
    """Parse and check one emails/*.yaml file; None when it has errors.

    Keys that fail the schema are left out of the later checks, so one run reports everything.
    """
    doc, diags = load_yaml(path, data)
    if doc is None:
        return None, diags
    diags += schema_diagnostics(doc, "email.schema.json")
    bad = invalid_keys(diags)
    if not isinstance(doc.value, dict) or "email" in bad:
        return None, diags
    value = {k: v for k, v in doc.value.items() if k not in bad}
    stem = strip_yaml_suffix(path.rsplit("/", 1)[-1])
    slug = str(value.get("email", stem))
    if "email" not in value and not _SLUG.fullmatch(slug):
        message = (
            f"the file name gives the slug {slug!r}, which is not valid; rename it or set email:"
        )
        return None, [*diags, doc.diag("", message)]
    overrides = _normalise(value)
    fields, problems = _effective(doc, slug, overrides, ctx)
    if fields is None:
        return None, diags + problems
    if "subject" in value:
        problems += subject_diagnostics(doc, "/subject", fields.subject, ctx.limits)
    problems += _event_diagnostics(doc, value, fields, ctx)
    problems += _sender_diagnostics(doc, value.get("sender"))
    if not ctx.has_admins:
        problems += _admin_warnings(doc, value, fields)
    diags += problems
    mark = doc.mark("/email", key=True) if "email" in value else doc.mark("")
    custom = None if slug in ctx.catalog.defaults else fields
    desired = DesiredSystemEmail(slug, overrides, Origin(path, mark.line, mark.col), custom)
    return (None if any(d.severity == "error" for d in diags) else desired), diags
