"""The unsubscribe pages: a GET asks (it never unsubscribes), a POST does it."""

from __future__ import annotations

from html import escape

from commsync.config.settings import Settings

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:16px/1.5 -apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;color:#1f2933;margin:0}}
main{{max-width:480px;margin:64px auto;background:#fff;padding:32px;border-radius:8px;border-top:4px solid {color}}}
button{{font:inherit;background:{color};color:#fff;border:0;border-radius:6px;padding:10px 18px;cursor:pointer}}</style>
</head><body><main>{body}</main></body></html>
"""


def _masked(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:2]}{'•' * max(1, len(local) - 2)}@{domain}"


def _page(settings: Settings, title: str, body: str) -> str:
    return _PAGE.format(
        title=escape(title), color=escape(settings.mail.theme.brand_color), body=body
    )


def confirm(settings: Settings, address: str, action: str) -> str:
    name = escape(settings.network_name)
    body = (
        f"<h1>Unsubscribe?</h1><p>Stop announcement emails from {name} to <strong>{escape(_masked(address))}</strong>. "
        "Emails about your account, payments and sites still arrive.</p>"
        f'<form method="post" action="{escape(action)}"><button type="submit">Unsubscribe</button></form>'
    )
    return _page(settings, f"Unsubscribe from {settings.network_name}", body)


def done(settings: Settings) -> str:
    body = f"<h1>You are unsubscribed</h1><p>{escape(settings.network_name)} will not send you announcement emails any more.</p>"
    return _page(settings, "Unsubscribed", body)


def unknown(settings: Settings) -> str:
    body = "<h1>Link not recognised</h1><p>This unsubscribe link is not valid. Reply to any of our emails and we will remove you.</p>"
    return _page(settings, "Unsubscribe", body)
