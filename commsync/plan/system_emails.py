"""Planning system emails: import, create, update, reset, upgrade, delete (pure).

An installed default remembers the default it came from (`base_version`, `base_fields`) and which
fields the operator overrides. Its effective fields are base ⊕ overrides. A customised copy keeps
its base when a newer default appears (reported three-way); an uncustomised copy upgrades.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from commsync.model import (
    Catalog,
    DefaultEmail,
    DesiredState,
    Imports,
    JsonValue,
    LiveSnapshot,
    LiveSystemEmail,
    SystemEmailFields,
)
from commsync.plan.findings import Findings
from commsync.plan.model import (
    EmailInstall,
    FieldChange,
    ObjectKind,
    PlanWarning,
    SystemEmailAction,
    ThreeWay,
    Verb,
    WarningCode,
)


@dataclass(frozen=True, slots=True)
class _Want:
    slug: str
    overrides: Mapping[str, JsonValue]
    path: str | None
    custom: SystemEmailFields | None = None


def field_changes(before: SystemEmailFields, after: SystemEmailFields) -> tuple[FieldChange, ...]:
    old, new = before.to_json(), after.to_json()
    return tuple(FieldChange(k, old[k], new[k]) for k in new if old[k] != new[k])


def _wanted(desired: DesiredState, catalog: Catalog) -> dict[str, _Want]:
    wants = {
        e.slug: _Want(e.slug, e.overrides, e.origin.path, e.custom) for e in desired.system_emails
    }
    imports = Imports(desired.imports)
    for slug, default in catalog.defaults.items():
        if imports.installs(default.critical) and slug not in wants:
            wants[slug] = _Want(slug, {}, None)
    return wants


def _target(
    want: _Want, default: DefaultEmail | None, live: LiveSystemEmail | None
) -> EmailInstall:
    if default is None:
        assert want.custom is not None
        return EmailInstall(want.custom, (), None, None, want.path)
    base_version, base = default.version, default.fields
    if (
        want.overrides
        and live is not None
        and live.base_version is not None
        and live.base_fields is not None
    ):
        base_version, base = live.base_version, live.base_fields  # customised: keep its base
    fields = base.with_values(want.overrides)
    return EmailInstall(fields, tuple(sorted(want.overrides)), base_version, base, want.path)


def _action_name(want: _Want, target: EmailInstall, live: LiveSystemEmail) -> Verb:
    kept = set(want.overrides)
    if live.overrides and kept < set(live.overrides):
        unchanged = all(target.fields.to_json()[k] == live.fields.to_json()[k] for k in kept)
        if unchanged:
            return Verb.RESET
    upgraded = live.base_version is not None and (target.base_version or 0) > live.base_version
    if upgraded and not kept and not live.overrides:
        return Verb.UPGRADE
    return Verb.UPDATE


def _reason(
    name: Verb, target: EmailInstall, live: LiveSystemEmail, changes: tuple[FieldChange, ...]
) -> str:
    if name == Verb.RESET:
        back = sorted(set(live.overrides) - set(target.overrides))
        reason = "fields back to the default: " + ", ".join(back)
        newer = live.base_version is not None and (target.base_version or 0) > live.base_version
        return reason + (
            f" (default v{live.base_version} → v{target.base_version})" if newer else ""
        )
    if name == Verb.UPGRADE:
        return f"default v{live.base_version} → v{target.base_version} (not customised)"
    if live.drift and changes:
        return "changed outside commsync since the last apply; the file's values are restored"
    if changes:
        return "fields changed: " + ", ".join(c.field for c in changes)
    if target.managed_path != live.managed_path:
        was = live.managed_path or "no file"
        now = target.managed_path or "no file (installed by imports:)"
        return f"now managed by {now} (was {was})"
    return "records which fields are customised: " + (", ".join(target.overrides) or "none")


def _plan_existing(
    want: _Want, default: DefaultEmail | None, live: LiveSystemEmail, out: Findings
) -> None:
    target = _target(want, default, live)
    changes = field_changes(live.fields, target.fields)
    same_meta = (
        target.overrides == live.overrides
        and target.base_version == live.base_version
        and target.managed_path == live.managed_path
    )
    if (
        default is not None
        and live.base_version is not None
        and default.version > live.base_version
        and want.overrides
    ):
        out.warnings.append(_newer_default(default, live, want.path))
    if not changes and same_meta:
        return
    name = _action_name(want, target, live)
    reason = _reason(name, target, live, changes)
    out.actions.append(
        SystemEmailAction(
            name=want.slug,
            action=name,
            reason=reason,
            changes=changes,
            drift=live.drift and bool(changes),
            fingerprint=live.fingerprint(),
            path=want.path,
            install=target,
        )
    )


def _newer_default(default: DefaultEmail, live: LiveSystemEmail, path: str | None) -> PlanWarning:
    assert live.base_fields is not None
    old, new, current = live.base_fields.to_json(), default.fields.to_json(), live.fields.to_json()
    details = tuple(ThreeWay(k, old[k], new[k], current[k]) for k in new if old[k] != new[k])
    msg = (
        f"default v{default.version} is available; this customised copy stays on v{live.base_version}. "
        f"Delete the overrides from {path or 'its file'} to adopt it, or fold its changes into them"
    )
    code = WarningCode.NEWER_DEFAULT
    return PlanWarning(ObjectKind.SYSTEM_EMAIL, live.slug, code, msg, path, details)


def _plan_new(want: _Want, default: DefaultEmail | None, out: Findings) -> None:
    target = _target(want, default, None)
    if default is None:
        reason = f"custom email on event {target.fields.event}"
        out.actions.append(
            SystemEmailAction(
                name=want.slug, action=Verb.CREATE, reason=reason, path=want.path, install=target
            )
        )
        return
    changes = field_changes(default.fields, target.fields)
    reason = f"installs default v{default.version}"
    reason += f", customised: {', '.join(target.overrides)}" if target.overrides else ""
    reason += "" if want.path else f" (imports: {'critical' if default.critical else 'all'})"
    out.actions.append(
        SystemEmailAction(
            name=want.slug,
            action=Verb.IMPORT,
            reason=reason,
            changes=changes,
            path=want.path,
            install=target,
        )
    )


def _plan_removed(live: LiveSystemEmail, prune: bool, out: Findings) -> None:
    if live.managed_path is None:
        return
    if prune:
        reason = f"{live.managed_path} was removed (prune: true); its stats go with it"
        out.actions.append(
            SystemEmailAction(
                name=live.slug,
                action=Verb.DELETE,
                reason=reason,
                fingerprint=live.fingerprint(),
                path=live.managed_path,
            )
        )
        return
    target = EmailInstall(live.fields, live.overrides, live.base_version, live.base_fields, None)
    reason = (
        f"{live.managed_path} was removed; the email stays installed as it is, no longer managed "
        "by a file (prune is off): plan and drift stop reporting it, `commsync pull` writes its "
        "file again"
    )
    out.actions.append(
        SystemEmailAction(
            name=live.slug,
            action=Verb.UPDATE,
            reason=reason,
            fingerprint=live.fingerprint(),
            path=live.managed_path,
            install=target,
        )
    )


def plan_system_emails(
    desired: DesiredState, catalog: Catalog, live: LiveSnapshot
) -> tuple[Findings, tuple[str, ...]]:
    """Actions for installed and wanted system emails, and the defaults available to import."""
    out = Findings()
    wants = _wanted(desired, catalog)
    for slug in sorted(set(wants) | set(live.system_emails)):
        want, current = wants.get(slug), live.system_emails.get(slug)
        default = catalog.defaults.get(slug)
        if want is not None and current is None:
            _plan_new(want, default if want.custom is None else None, out)
        elif want is not None and current is not None:
            _plan_existing(want, default if want.custom is None else None, current, out)
        elif current is not None:
            _plan_removed(current, desired.prune, out)
    available = tuple(
        sorted(s for s in catalog.defaults if s not in wants and s not in live.system_emails)
    )
    return out, available
