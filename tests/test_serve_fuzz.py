"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis): no 5xx.

Every operation is called with requests the document allows and with ones it does not, under no
credential, the admin key, a customer's token or a forged one, and with arbitrary values in the
headers a client controls (Authorization, Content-Type, Origin, forwarding headers, cookies…):
any byte a header can carry, non-ASCII (latin-1) included.
"""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.helpers import Repo
from tests.http_server import Served

# What a header value can be on the wire: visible ASCII, space, tab and obs-text (0x80-0xff).
_VALUE = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\r\n\x00\x7f").filter(
        lambda c: c == "\t" or ord(c) >= 0x20
    ),
    max_size=300,
)
_HEADERS = (
    "Authorization",
    "Content-Type",
    "Origin",
    "Accept",
    "Accept-Encoding",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "Forwarded",
    "Cookie",
    "User-Agent",
    "Access-Control-Request-Method",
    "If-None-Match",
    "Range",
)
noise = st.dictionaries(
    st.sampled_from(_HEADERS),
    st.one_of(_VALUE, _VALUE.map(lambda v: f"Bearer {v}"), _VALUE.map(lambda v: f"Bearer v1.{v}")),
    max_size=4,
)


def test_no_request_the_openapi_document_allows_makes_the_server_fail(demo_repo: Repo) -> None:
    assert demo_repo.cli("apply", "--yes").exit_code == 0
    token = demo_repo.cli("token", "1001").stdout.strip().splitlines()[-1]
    with Served(demo_repo.root) as served:
        schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
        credentials = st.sampled_from(
            [{}, served.admin, served.bearer(token), {"Authorization": "Bearer v1.x.y"}]
        )
        headers_of = st.one_of(credentials, st.builds(lambda c, n: {**c, **n}, credentials, noise))
        failures: list[str] = []
        checked = noisy = 0
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
                    headers=headers_of,
                    own=st.booleans(),
                )
                def check(case: schemathesis.Case, headers: dict[str, str], own: bool) -> None:
                    nonlocal checked, noisy
                    if own and "customer_id" in (case.path_parameters or {}):
                        case.path_parameters["customer_id"] = "1001"  # the token's own customer
                    try:
                        response = case.call(base_url=served.url, headers=headers, timeout=30)
                    except requests.exceptions.InvalidHeader:
                        return  # the client refuses to send it (a leading space, say)
                    checked += 1
                    noisy += any(name not in ("Authorization",) for name in headers) or any(
                        not v.isascii() for v in headers.values()
                    )
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
        assert noisy > 100, noisy  # arbitrary header values did reach the server
        assert failures == []
        assert served.get("/healthz").status_code == 200
