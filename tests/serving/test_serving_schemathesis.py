"""Property run of the OpenAPI schema: generated requests never get a 5xx.

Operations are driven through hypothesis directly (schemathesis' pytest plugin does not
support pytest 9 yet): every operation gets ``MAX_EXAMPLES`` generated cases, valid and
invalid, sent with a valid API key: a few in the default suite, many more in ``slow``.
schemathesis is imported where it is used: its import costs every test worker ~1 s at
collection otherwise.
"""

import pytest
from hypothesis import HealthCheck, given, settings

from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.security import KeyStore, Principal

KEY = "fuzz.key"


@pytest.fixture(scope="module")
def api_schema(grid_export):
    import schemathesis

    keys = KeyStore()
    keys.add(KEY, Principal("fuzz", rate_per_minute=1e9, burst=10**9), method="sha256")
    model = ServedModel("no2", Forecaster.from_onnx(grid_export.path), str(grid_export.path))
    app = create_app([model], ServeSettings(keys=keys, max_body_bytes=1_000_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(
    "max_examples",
    [pytest.param(20, id="20"), pytest.param(200, id="200", marks=pytest.mark.slow)],
)
def test_generated_requests_never_get_a_server_error(api_schema, max_examples):
    from schemathesis.checks import not_a_server_error

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/forecast", "GET /v1/models"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(headers={"X-API-Key": KEY}, checks=[not_a_server_error])

        check()
