"""Registered defaults and events: the core catalog, add-ons (entry points) and catalogs: dirs."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from commsync.catalog.loader import build_catalog, core_catalog_dir
from commsync.model import NETWORK_CONTEXT
from commsync.render.sandbox import environment
from tests.helpers import SETTINGS, Repo

SPEC_DEFAULTS = {
    "payment_received_customer": ("payment_received", "customer", True),
    "payment_received_admin": ("payment_received", "admin", False),
    "payment_failed_customer": ("payment_failed", "customer", True),
    "payment_failed_admin": ("payment_failed", "admin", False),
    "site_published_customer": ("site_published", "customer", False),
    "site_published_admin": ("site_published", "admin", False),
    "confirm_email_address": ("confirm_email_address", "customer", True),
    "domain_created_admin": ("domain_created", "admin", False),
    "renewal_payment_created": ("renewal_payment_created", "customer", False),
    "membership_expired_customer": ("membership_expired", "customer", False),
    "membership_expired_admin": ("membership_expired", "admin", False),
    "demo_site_expiring_customer": ("demo_site_expiring", "customer", False),
    "demo_site_expiring_admin": ("demo_site_expiring", "admin", False),
}
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "id": (int, str)}


def test_core_catalog_has_the_specified_defaults_and_events() -> None:
    catalog, problems = build_catalog([core_catalog_dir()])
    assert problems == []
    got = {
        slug: (d.fields.event, d.fields.target, d.critical) for slug, d in catalog.defaults.items()
    }
    assert got == SPEC_DEFAULTS
    assert set(catalog.events) == {e for e, _, _ in SPEC_DEFAULTS.values()}
    assert all(d.version >= 1 and d.fields.format == "markdown" for d in catalog.defaults.values())


def test_events_carry_ultimate_multisite_payload_keys_with_typed_mock_values() -> None:
    catalog, _ = build_catalog([core_catalog_dir()])
    payment = catalog.events["payment_received"].key_names
    assert {
        "customer_name",
        "customer_user_email",
        "payment_total",
        "payment_reference_code",
        "payment_invoice_url",
        "membership_status",
    } <= payment
    assert "verification_link" in catalog.events["confirm_email_address"].key_names
    assert {"domain_domain", "site_title", "site_url"} <= catalog.events["domain_created"].key_names
    assert "default_payment_url" in catalog.events["renewal_payment_created"].key_names
    for event in catalog.events.values():
        for key in event.keys:
            assert isinstance(key.example, TYPES[key.type]) and not (
                key.type != "boolean" and isinstance(key.example, bool)
            ), key
    assert catalog.events["payment_received"].mock_payload()["payment_total"] == "$34.80"


@pytest.mark.parametrize("slug", sorted(SPEC_DEFAULTS))
def test_every_default_renders_strictly_with_its_mock_payload(slug: str) -> None:
    catalog, _ = build_catalog([core_catalog_dir()])
    default = catalog.defaults[slug]
    context = {
        **catalog.events[default.fields.event].mock_payload(),
        "network_name": "Acme",
        "network_url": "https://acme.example",
    }
    assert set(NETWORK_CONTEXT) <= set(context)
    subject = environment().from_string(default.fields.subject).render(context)
    body = environment().from_string(default.fields.content).render(context)
    assert "{{" not in subject + body and "\n" not in subject
    assert len(subject) < 90 and body.strip()


def _write_catalog(
    root: Path, event: str = "ticket_opened", email: str = "ticket_opened_customer"
) -> None:
    (root / "events").mkdir(parents=True)
    (root / "emails").mkdir()
    (root / "events" / f"{event}.yaml").write_text(
        textwrap.dedent(
            f"""\
            event: {event}
            description: A support ticket was opened.
            payload_groups: [customer]
            payload:
              ticket_subject: {{type: string, description: Subject of the ticket., example: Cannot log in}}
            """
        )
    )
    (root / "emails" / f"{email}.yaml").write_text(
        textwrap.dedent(
            f"""\
            email: {email}
            event: {event}
            target: customer
            critical: true
            version: 1
            subject: "We got your ticket: {{{{ ticket_subject }}}}"
            content: "Hi {{{{ customer_name }}}}, we are on it."
            """
        )
    )


def _install_addon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    site = tmp_path / "site"
    (site / "acme_addon").mkdir(parents=True)
    (site / "acme_addon" / "__init__.py").write_text(body)
    dist = site / "acme_addon-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-addon\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[commsync.catalog]\nacme = acme_addon:catalog_dir\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "acme_addon", raising=False)  # each test imports its own


def test_an_addon_registers_defaults_through_an_entry_point(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog_root = tmp_path / "addon-catalog"
    _write_catalog(catalog_root)
    _install_addon(tmp_path, monkeypatch, f"def catalog_dir():\n    return {str(catalog_root)!r}\n")
    data = repo.plan_json()
    actions = {a["address"]: a for a in data["actions"]}
    assert actions["system_email.ticket_opened_customer"]["action"] == "import"  # critical
    listing = json.loads(repo.cli("emails", "list", "--format", "json").stdout)["emails"]
    row = next(r for r in listing if r["slug"] == "ticket_opened_customer")
    assert row["source"] == "add-on acme-addon 1.2 (entry point 'acme')"
    repo.write("emails/ticket_opened_customer.yaml", "content: '{{ nope }}'\n")
    result = repo.cli("validate")
    assert (
        "emails/ticket_opened_customer.yaml:1:14: error: unknown placeholder 'nope' for event ticket_opened"
        in result.stdout
    )


def test_a_slug_registered_twice_names_both_sources(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog_root = tmp_path / "addon-catalog"
    _write_catalog(catalog_root, event="payment_received", email="payment_received_customer")
    _install_addon(tmp_path, monkeypatch, f"catalog_dir = {str(catalog_root)!r}\n")
    result = repo.cli("validate")
    assert result.exit_code == 1
    assert (
        "events/payment_received.yaml:1:1: error: event 'payment_received' is registered twice: by commsync (core) "
        "(events/payment_received.yaml) and by add-on acme-addon 1.2 (entry point 'acme')"
    ) in result.stdout
    assert (
        "default email 'payment_received_customer' is registered twice: by commsync (core)"
        in result.stdout
    )


def test_a_broken_addon_is_named(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_addon(tmp_path, monkeypatch, "def catalog_dir():\n    raise RuntimeError('boom')\n")
    result = repo.cli("validate")
    assert result.exit_code == 1
    assert (
        "<add-on acme-addon 1.2 (entry point 'acme')>:1:1: error: cannot load the catalog: boom"
        in result.stdout
    )


def test_catalogs_directories_in_the_repository(repo: Repo) -> None:
    repo.write("commsync.yaml", SETTINGS + "catalogs: [addons/support, addons/missing]\n")
    _write_catalog(repo.root / "addons" / "support")
    result = repo.cli("validate", "--no-store")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "commsync.yaml:8:28: error: catalog directory 'addons/missing' is missing or empty"
    ]
    repo.write("commsync.yaml", SETTINGS + "catalogs: [addons/support]\n")
    assert repo.cli("validate", "--no-store").exit_code == 0
    data = repo.plan_json()
    assert "system_email.ticket_opened_customer" in {a["address"] for a in data["actions"]}
    (repo.root / "addons" / "support" / "events" / "ticket_opened.yaml").write_text(
        "event: ticket_opened\n"
    )
    result = repo.cli("validate", "--no-store")
    assert (
        "addons/support/events/ticket_opened.yaml:1:1: error: missing required key 'description'"
        in result.stdout
    )


def test_an_example_that_does_not_fit_its_key_type_is_an_error_at_its_position(
    repo: Repo,
) -> None:
    repo.write("commsync.yaml", SETTINGS + "catalogs: [addons/support]\n")
    _write_catalog(repo.root / "addons" / "support")
    event = repo.root / "addons" / "support" / "events" / "ticket_opened.yaml"
    event.write_text(
        event.read_text()
        + "  ticket_id: {type: id, description: Ticket id., example: true}\n"
        + "  opened_by: {type: string, format: email, description: Who., example: not-an-address}\n"
    )
    result = repo.cli("validate", "--no-store")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "addons/support/events/ticket_opened.yaml:6:59: error: the example must be an id "
        "(an integer or a string), got boolean",
        "addons/support/events/ticket_opened.yaml:7:72: error: the example must be one email "
        "address",
    ]
