"""Property-based fuzzing of the gateway with schemathesis, from the app's own OpenAPI
document, against a real server with scripted rungs: whatever is generated (valid or
not), the gateway must never answer 5xx.

The schema is taken from an app built at import time (schemathesis parametrizes at
collection; its lazy ``from_fixture`` loader does not work with this pytest), and the
requests go to a server started by a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from modelladder.gateway import GatewayConfig, create_app
from modelladder.traces import TraceStore
from tests.support.gateway import gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server


def _fleet() -> Any:
    return scripted_fleet("tiny", "small", steps={"extract": {"max_rung": "small"}})


def _backends() -> dict[str, Any]:
    return {"tiny": scripted("tiny"), "small": scripted("small")}


_doc = create_app(
    _fleet(), TraceStore(":memory:"), config=GatewayConfig(api_keys=()), backends=_backends()
).openapi()
schema = schemathesis.openapi.from_dict(_doc)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = TraceStore(tmp_path_factory.mktemp("gw-fuzz") / "traces.sqlite")
    with gateway(_fleet(), store, _backends(), max_body_bytes=256 * 1024) as srv:
        yield srv.base_url
    store.close()


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_for_any_generated_request(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)
