"""The platform's side of the API a bridge (the WordPress plugin) uses: deletes, a customer's
repeated memberships of one product, the registered event types, and customer tokens minted
with the admin key — through a real `serve` (in-process uvicorn) and the real store."""

from __future__ import annotations

from commsync.model import Targets
from commsync.store.sql import open_store
from tests.helpers import Repo, dump_store
from tests.http_server import Served

NOTICE = """\
kind: notice
message_type: info
subject: For Pro
content: Hello {{ customer_name }}.
targets:
  products: [pro]
"""


def _pro_audience(repo: Repo) -> int:
    store = open_store(repo.store_url)
    try:
        pro = Targets(products=("pro",))
        return store.count_audiences([pro], ["active", "trialing"])[pro].total
    finally:
        store.close()


def test_repeated_memberships_of_one_product_count_the_most_active(repo: Repo) -> None:
    repo.import_data()
    with Served(repo.root) as served:
        body = [
            {"product": "pro", "status": "cancelled"},
            {"product": "pro", "status": "active"},
            {"product": "starter", "status": "expired"},
        ]
        done = served.client.put("/v1/customers/5/memberships", json=body, headers=served.admin)
        assert done.status_code == 200, done.text
        assert done.json() == {"customer": "5", "memberships": 2}
    rows = {(str(r[0]), str(r[1])): r[2] for r in dump_store(repo.store_url)["memberships"]}
    assert rows[("5", "pro")] == "active" and rows[("5", "starter")] == "expired"


def test_a_deleted_customer_leaves_audiences_and_a_write_brings_them_back(repo: Repo) -> None:
    repo.import_data()
    assert _pro_audience(repo) == 2  # customers 1 (active) and 2 (trialing)
    with Served(repo.root) as served:
        assert served.client.delete("/v1/customers/1").status_code == 401
        gone = served.client.delete("/v1/customers/1", headers=served.admin)
        assert gone.status_code == 204
        assert _pro_audience(repo) == 1
        again = served.client.delete("/v1/customers/1", headers=served.admin)
        assert again.status_code == 204  # idempotent: still deleted
        missing = served.client.delete("/v1/customers/404", headers=served.admin)
        assert missing.status_code == 404
        # a deleted customer takes no memberships until written again
        pro = [{"product": "pro", "status": "active"}]
        refused = served.client.put("/v1/customers/1/memberships", json=pro, headers=served.admin)
        assert refused.status_code == 404
        back = served.client.put(
            "/v1/customers/1", json={"email": "ada@example.com"}, headers=served.admin
        )
        assert back.status_code == 200 and back.json() == {"id": "1", "created": False}
        pro = [{"product": "pro", "status": "active"}]
        assert (
            served.client.put(
                "/v1/customers/1/memberships", json=pro, headers=served.admin
            ).status_code
            == 200
        )
    assert _pro_audience(repo) == 2


def test_a_product_a_broadcast_targets_cannot_be_deleted(repo: Repo) -> None:
    repo.import_data()
    repo.write("broadcasts/notices/for-pro.yaml", NOTICE)
    repo.commit_all("notice")
    assert repo.cli("apply", "--yes").exit_code == 0
    with Served(repo.root) as served:
        refused = served.client.delete("/v1/products/pro", headers=served.admin)
        assert refused.status_code == 409
        assert "notices/for-pro" in refused.json()["detail"]
        done = served.client.delete("/v1/products/agency", headers=served.admin)
        assert done.status_code == 204
        assert served.client.delete("/v1/products/agency", headers=served.admin).status_code == 404
    state = dump_store(repo.store_url)
    assert "agency" not in {str(r[0]) for r in state["products"]}
    assert all(str(r[1]) != "agency" for r in state["memberships"])


def test_event_types_list_what_commsync_registers(repo: Repo) -> None:
    with Served(repo.root) as served:
        assert served.client.get("/v1/event-types").status_code == 401
        listed = served.client.get("/v1/event-types", headers=served.admin)
        assert listed.status_code == 200
        types = {e["type"]: e for e in listed.json()["event_types"]}
    assert "payment_received" in types
    keys = {k["name"] for k in types["payment_received"]["keys"]}
    assert {"customer_id", "customer_user_email"} <= keys


def test_a_minted_customer_token_reads_that_customers_feed_only(repo: Repo) -> None:
    repo.import_data()
    repo.write("broadcasts/notices/for-pro.yaml", NOTICE)
    repo.commit_all("notice")
    assert repo.cli("apply", "--yes").exit_code == 0
    with Served(repo.root) as served:
        minted = served.client.post("/v1/customers/1/token", json={}, headers=served.admin)
        assert minted.status_code == 200, minted.text
        body = minted.json()
        assert body["customer"] == "1" and body["expires_at"]
        own = {"Authorization": f"Bearer {body['token']}"}
        feed = served.client.get("/v1/customers/1/notices", headers=own)
        assert feed.status_code == 200
        assert [n["id"] for n in feed.json()["notices"]] == ["notices/for-pro"]
        assert served.client.get("/v1/customers/2/notices", headers=own).status_code == 403
        bad = served.client.post(
            "/v1/customers/1/token", json={"ttl": "forever"}, headers=served.admin
        )
        assert bad.status_code == 422 and "ttl" in str(bad.json()["detail"])
        unknown = served.client.post("/v1/customers/404/token", json={}, headers=served.admin)
        assert unknown.status_code == 404
