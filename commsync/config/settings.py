"""The one place that turns commsync.yaml plus COMMSYNC_* environment variables into Settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from commsync.config.schema import schema_diagnostics
from commsync.config.yamlpos import Json, YamlDoc, as_list
from commsync.diagnostics import Diagnostic
from commsync.model import DeliveryMode, Imports, Theme
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.model.mail import parse_mailbox

SETTINGS_FILE = "commsync.yaml"  # at the repository's root

DEFAULT_STORE = "sqlite:///.commsync/store.db"
DEFAULT_TRANSPORT = "maildir:.commsync/outbox"
DEFAULT_STATUSES = ("active", "trialing")


@dataclass(frozen=True, slots=True)
class MailSettings:
    from_name: str
    from_address: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    admins: tuple[str, ...] = ()
    transport: str = DEFAULT_TRANSPORT
    connections: int = 4
    max_rate: float | None = None
    theme: Theme = field(default_factory=Theme)
    delivery: DeliveryMode = DeliveryMode.APPLY  # who delivers the broadcasts apply starts
    worker_timeout: int = 60  # seconds of silence after which a delivery worker is gone


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path
    network_name: str
    network_url: str
    store_url: str
    mail: MailSettings
    public_url: str = ""
    membership_statuses: tuple[str, ...] = DEFAULT_STATUSES
    imports: Imports = Imports.CRITICAL
    prune: bool = False
    catalogs: tuple[str, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    allowed_origins: tuple[str, ...] = ()  # CORS for the feed, dismiss and the widget

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """`serve.allowed_origins`, else the origin of the network's URL."""
        if self.allowed_origins:
            return self.allowed_origins
        parts = urlsplit(self.network_url)
        return (f"{parts.scheme}://{parts.netloc}",)

    @property
    def network_context(self) -> dict[str, str]:
        return {"network_name": self.network_name, "network_url": self.network_url}

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.public_url}/v1/unsubscribe/{token}"

    @property
    def unsubscribe_mailbox(self) -> str:
        return self.mail.unsubscribe_mailto or self.mail.reply_to or self.mail.from_address


def _check_url_credentials(doc: YamlDoc, pointer: str, url: str, where: str) -> list[Diagnostic]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [doc.diag(pointer, "not a valid URL")]
    if parts.password:
        return [doc.diag(pointer, f"a password in the URL would end up in git; {where}")]
    return []


def _mail_diagnostics(doc: YamlDoc, mail: Mapping[str, object]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    sender = mail.get("from")
    if isinstance(sender, str) and parse_mailbox(sender) is None:
        out.append(
            doc.diag("/mail/from", f"{sender!r} is not a mailbox like 'Acme <hello@acme.example>'")
        )
    for key in ("reply_to", "unsubscribe_mailto"):
        value = mail.get(key)
        if isinstance(value, str) and parse_mailbox(value) is None:
            out.append(doc.diag(f"/mail/{key}", f"{value!r} is not an email address"))
    admins = mail.get("admins")
    for i, admin in enumerate(admins if isinstance(admins, list) else []):
        if isinstance(admin, str) and parse_mailbox(admin) is None:
            out.append(doc.diag(f"/mail/admins/{i}", f"{admin!r} is not an email address"))
    transport = mail.get("transport")
    if isinstance(transport, str) and transport.startswith("smtp"):
        hint = "set COMMSYNC_SMTP_USERNAME and COMMSYNC_SMTP_PASSWORD in the environment instead"
        out.extend(_check_url_credentials(doc, "/mail/transport", transport, hint))
    return out


def settings_diagnostics(doc: YamlDoc) -> list[Diagnostic]:
    """Schema and semantic errors of commsync.yaml."""
    out = schema_diagnostics(doc, "commsync.schema.json")
    value = doc.value if isinstance(doc.value, dict) else {}
    mail = value.get("mail")
    if isinstance(mail, dict):
        out.extend(_mail_diagnostics(doc, mail))
    catalogs = value.get("catalogs")
    for i, directory in enumerate(catalogs if isinstance(catalogs, list) else []):
        if isinstance(directory, str) and not inside(directory):
            msg = (
                f"catalog directory {directory!r} is outside the repository; catalogs: lie inside "
                "it (an add-on installed as a package registers its catalog with the "
                "commsync.catalog entry point)"
            )
            out.append(doc.diag(f"/catalogs/{i}", msg))
    store = value.get("store")
    if isinstance(store, str) and store.startswith("postgresql"):
        hint = "use PGPASSWORD, a .pgpass file or COMMSYNC_STORE instead"
        out.extend(_check_url_credentials(doc, "/store", store, hint))
    return out


def inside(relative: str) -> bool:
    """Whether a path written in commsync.yaml stays inside the repository."""
    path = PurePosixPath(relative)
    if path.is_absolute() or "\\" in relative:
        return False
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


def resolve_store_url(url: str, root: Path) -> str:
    """Make a relative sqlite path relative to the project root."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("/"):
            return prefix + str((root / rest).resolve())
    return url


def build_settings(
    doc: YamlDoc, root: Path, env: Mapping[str, str], store_override: str | None = None
) -> Settings:
    """Settings from a commsync.yaml that passed `settings_diagnostics`."""
    value = doc.value
    assert isinstance(value, dict)
    network = value["network"]
    mail = value["mail"]
    assert isinstance(network, dict) and isinstance(mail, dict)
    store = store_override or env.get("COMMSYNC_STORE") or str(value.get("store", DEFAULT_STORE))
    mailbox = parse_mailbox(str(mail["from"]))
    assert mailbox is not None
    theme = mail.get("theme") or {}
    assert isinstance(theme, dict)
    max_rate = mail.get("max_rate")
    targeting = value.get("targeting") or {}
    assert isinstance(targeting, dict)
    return Settings(
        root=root,
        network_name=str(network["name"]),
        network_url=str(network["url"]),
        public_url=str(
            value.get("public_url") or f"{str(network['url']).rstrip('/')}/commsync"
        ).rstrip("/"),
        store_url=resolve_store_url(store, root),
        mail=MailSettings(
            from_name=mailbox[0],
            from_address=mailbox[1],
            reply_to=_address(mail.get("reply_to")),
            unsubscribe_mailto=_address(mail.get("unsubscribe_mailto")),
            admins=tuple(str(a) for a in as_list(mail.get("admins"))),
            transport=env.get("COMMSYNC_SMTP_URL") or str(mail.get("transport", DEFAULT_TRANSPORT)),
            connections=_int(mail.get("connections"), 4),
            max_rate=float(max_rate) if isinstance(max_rate, int | float) else None,
            delivery=DeliveryMode(str(mail.get("delivery", DeliveryMode.APPLY))),
            worker_timeout=_int(mail.get("worker_timeout"), 60),
            theme=Theme(
                logo_url=_opt(theme.get("logo_url")),
                brand_color=str(theme.get("brand_color", "#2563eb")),
                footer=_opt(theme.get("footer")),
                company_address=_opt(theme.get("company_address")),
            ),
        ),
        membership_statuses=tuple(
            str(s) for s in as_list(targeting.get("membership_statuses")) or DEFAULT_STATUSES
        ),
        imports=Imports(str(value.get("imports", Imports.CRITICAL))),
        prune=bool(value.get("prune", False)),
        catalogs=tuple(str(c) for c in as_list(value.get("catalogs"))),
        limits=_limits(value.get("limits")),
        allowed_origins=tuple(
            str(o) for o in as_list(_mapping(value, "serve").get("allowed_origins"))
        ),
    )


def _mapping(value: Mapping[str, object], key: str) -> Mapping[str, Json]:
    found = value.get(key)
    return found if isinstance(found, dict) else {}


def _limits(value: object) -> Limits:
    given = value if isinstance(value, dict) else {}
    return Limits(**{k: int(v) for k, v in given.items() if k in Limits.names()})


def _address(value: object) -> str | None:
    mailbox = parse_mailbox(value) if isinstance(value, str) else None
    return None if mailbox is None else mailbox[1]


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
