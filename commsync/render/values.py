"""Placeholder values for a customer: the one place they are computed (emails, notices, previews)."""

from __future__ import annotations

from collections.abc import Mapping

from commsync.model import CustomerRecord


def customer_values(
    customer: CustomerRecord, network: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The broadcast placeholders for one customer (plus the network's, when given)."""
    name = customer.name
    return {
        "customer_id": customer.id,
        "customer_name": name,
        "customer_first_name": customer.first_name or name,
        "customer_last_name": customer.last_name or "",
        "customer_username": customer.username or "",
        "customer_user_email": customer.email,
        **(network or {}),
    }
