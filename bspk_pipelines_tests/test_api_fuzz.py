"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis), on SQLite
and PostgreSQL: valid and invalid requests for every operation, a bounded number of each, and
every answer must be no 5xx, a declared status, and match the declared schema (body and headers).
The figures (operations, cases, failures) are printed (`pytest -s`)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
# Imported here, not first inside the test as `from_asgi` would: CPython 3.11.7's compile (which
# pytest's rewriting of the plugin's modules runs) can fail with "AST constructor recursion depth
# mismatch" when a finaliser runs during it (python/cpython#106905), and a test's garbage
# (connections of closed databases) is there to be finalised; at collection it is not.
from schemathesis.specs.openapi import schemas as _loaded_before_any_test  # noqa: F401
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bspk_pipelines_tests.builders import make_world, seed

EXAMPLES = 40  # per operation and mode: about 1,500 cases, under half a minute per backend


def not_a_server_error(ctx, response, case):
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code} from {case.method} {case.formatted_path}: {response.text[:300]}")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture
def fuzzed(engine, tmp_path):
    world = make_world(engine, tmp_path)
    seed(world, "acme", ("S1", "S2", "S3"))
    return world


def fuzz(operation, mode: GenerationMode, auth: dict[str, str], statuses: Counter, failures: list[str]):
    """A Hypothesis test sending `mode` cases of `operation`, counting statuses and check failures."""

    @given(case=operation.as_strategy(generation_mode=mode, headers=auth))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call()
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 (every failure is counted, not only the first)
            failures.append(f"{operation.label} ({mode.value}): {str(e).strip()[:500]}")

    return run


def test_the_api_survives_fuzzing_from_its_own_openapi_document(fuzzed, request):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    impossible: list[str] = []
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, fuzzed.auth("acme"), statuses, failures)()
            except Unsatisfiable:  # nothing of the operation can be made invalid (no parameter, no body)
                impossible.append(f"{operation.label} ({mode.value})")
    elapsed = time.monotonic() - started
    cases = sum(statuses.values())
    backend = request.node.callspec.params["warehouse_url"]
    print(f"\nschemathesis on {backend}: {operations} operations, {cases} cases, {len(failures)} failures "
          f"in {elapsed:.0f} s; statuses: {dict(sorted(statuses.items()))}")
    if impossible:
        print(f"  no case could be generated for: {', '.join(impossible)}")
    for failure in dict.fromkeys(failures):
        print("  " + failure)
    assert operations == 20 and cases > 20 * EXAMPLES
    assert not failures
