"""Property-based API fuzzing with schemathesis: no input makes the running server answer 5xx.

One test per operation of the server's OpenAPI document, each with a bounded number of
hypothesis examples. (schemathesis's own pytest plugin needs `Item._nodeid`, which
pytest 9 removed, so the operations are driven through `as_strategy()` here.)
"""

from __future__ import annotations

import os
import tempfile

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

MAX_EXAMPLES = int(os.environ.get("NNPM_FUZZ_EXAMPLES", "30"))  # raise it for a deeper local run


def _operation_labels() -> list[str]:
    """'METHOD /path' for every operation, read from an in-process app at collection time."""
    from registry_server.app import create_app
    from registry_server.settings import ServerSettings

    with tempfile.TemporaryDirectory() as tmp:
        doc = create_app(ServerSettings(data_dir=tmp)).openapi()
    return [f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item]


@pytest.fixture(scope="module")
def fuzz_token(shared_registry, tmp_path_factory) -> str:
    """A user who owns one published package, so owner-only paths run past authorisation too."""
    from packages import write_package

    token = shared_registry.add_user("fuzzer")
    folder = write_package(tmp_path_factory.mktemp("fuzz") / "tiny", "tiny", "1.0.0")
    assert shared_registry.publish(folder, token).status_code == 201
    return token


@pytest.fixture(scope="module")
def api_schema(shared_registry):
    """The running server's own OpenAPI document."""
    return schemathesis.openapi.from_url(shared_registry.url + "/openapi.json")


@pytest.mark.parametrize("label", _operation_labels())
def test_no_input_makes_the_server_fail(label: str, api_schema, shared_registry, fuzz_token: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    headers = {"Authorization": f"Bearer {fuzz_token}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.function_scoped_fixture])
    def run(case) -> None:
        case.call_and_validate(base_url=shared_registry.url, headers=headers, checks=[not_a_server_error],
                               timeout=30)

    run()


def test_server_is_still_healthy_after_fuzzing(shared_registry) -> None:
    assert httpx.get(shared_registry.url + "/api/v1/health").json()["status"] == "ok"
    log = shared_registry.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
