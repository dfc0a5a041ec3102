"""A fuzz run of the Workflow HTTP API against the OpenAPI document it serves (schemathesis).

Every operation of the document gets generated requests, valid and invalid, against a real engine
with a real Dapr-SDK worker: no request may get a 5xx or break the server, and each answer must be
one the document describes. Bounded: 50 examples per operation and 30 sequences of calls, about
ten seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from dapr_workflows_component.http_api import HttpSettings
from dapr_workflows_component.http_openapi import openapi_document
from hypothesis import HealthCheck, settings
from schemathesis import Case, Response
from schemathesis.specs.openapi.checks import allow_header_conformance

from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost

# The bulk routes' paths are also an instance's path (an instance may be named "purge"), so a 405
# there lists the methods of both routes in its Allow header.
SHARED_PATHS = {"POST /v1.0/workflows/{component}/purge", "POST /v1.0/workflows/{component}/terminate"}
MAX_EXAMPLES = 50
STATEFUL_EXAMPLES = 30
PAYLOAD_LIMIT = 2048


def engine_with_worker(workdir: Path) -> Iterator[EngineProcess]:
    # A small payload limit, so that generated bodies reach it; starts wait briefly for a worker.
    engine = EngineProcess(
        workdir, "--max-payload-bytes", str(PAYLOAD_LIMIT), "--http-start-timeout-seconds", "2"
    ).start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, workdir / "dapr-host.log")
        try:
            yield engine
        finally:
            worker.close()
    finally:
        engine.kill()
    assert "Traceback" not in engine.log_text(), engine.log_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    yield from engine_with_worker(tmp_path_factory.mktemp("http-fuzz"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[EngineProcess]:
    """An engine of its own, so that no instance of another test changes what a sequence meets."""
    yield from engine_with_worker(tmp_path)


# The document the fuzzed engine serves, built here too so that pytest can collect one test per
# operation before the engine runs; `test_the_served_document_is_the_one_fuzzed` checks they agree.
SETTINGS = HttpSettings(max_body_bytes=PAYLOAD_LIMIT)
schema = schemathesis.openapi.from_dict(openapi_document(SETTINGS.component_names, SETTINGS.max_body_bytes))


def test_the_served_document_is_the_one_fuzzed(served: EngineProcess) -> None:
    with urllib.request.urlopen(f"{served.http_url}/v1.0/workflows/openapi.json", timeout=10) as response:
        assert json.load(response) == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_gets_a_server_error(case: Case, served: EngineProcess) -> None:
    excluded = [allow_header_conformance] if case.operation.label in SHARED_PATHS else []
    case.call_and_validate(base_url=served.http_url, timeout=30, excluded_checks=excluded)


def test_sequences_of_calls_on_started_instances_get_no_server_error(fresh: EngineProcess) -> None:
    """Stateful: a start's instance ID flows into the other calls (the document's links).

    Each sequence purges the instances it started when it ends, so that Hypothesis, replaying a
    sequence, meets the same state (a replayed start would otherwise find its ID taken).
    """
    base = fresh.http_url
    served_schema = schemathesis.openapi.from_url(f"{base}/v1.0/workflows/openapi.json")

    class Sequences(served_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.started: list[str] = []

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            if case.operation.label.endswith("/start") and response.status_code == 202:
                self.started.append(response.json()["instanceID"])

        def teardown(self) -> None:
            for instance_id in self.started:
                path = f"{base}/v1.0/workflows/dapr/{urllib.parse.quote(instance_id, safe='')}"
                for action in ("/terminate", "/purge"):
                    try:
                        urllib.request.urlopen(
                            urllib.request.Request(path + action, method="POST"), timeout=10
                        )
                    except urllib.error.HTTPError as err:
                        assert err.code == 404, err  # purged within the sequence
            super().teardown()

    Sequences.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
