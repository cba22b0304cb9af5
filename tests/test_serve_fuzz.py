"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis): no 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.helpers import Repo
from tests.http_server import Served


def test_no_request_the_openapi_document_allows_makes_the_server_fail(demo_repo: Repo) -> None:
    assert demo_repo.cli("apply", "--yes").exit_code == 0
    token = demo_repo.cli("token", "1001").stdout.strip().splitlines()[-1]
    with Served(demo_repo.root) as served:
        schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
        credentials = st.sampled_from(
            [{}, served.admin, served.bearer(token), {"Authorization": "Bearer v1.x.y"}]
        )
        failures: list[str] = []
        checked = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=40,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                )
                @given(
                    case=operation.as_strategy(generation_mode=mode),
                    headers=credentials,
                    own=st.booleans(),
                )
                def check(case: schemathesis.Case, headers: dict[str, str], own: bool) -> None:
                    nonlocal checked
                    if own and "customer_id" in (case.path_parameters or {}):
                        case.path_parameters["customer_id"] = "1001"  # the token's own customer
                    response = case.call(base_url=served.url, headers=headers, timeout=30)
                    checked += 1
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:200]}"
                        )

                try:
                    check()
                except Unsatisfiable:
                    # some operations have no input that can be invalid (GET /healthz, a
                    # free-form string in a path): only the positive cases exist
                    assert mode is GenerationMode.NEGATIVE

        assert checked > 500
        assert failures == []
        assert served.get("/healthz").status_code == 200
