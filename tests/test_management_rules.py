"""The management API's rules on their own: durations, times, retention policies, tokens, limits."""

from __future__ import annotations

import pytest
from dapr_workflows_component.management_rules import (
    bulk_limit,
    continuation_token,
    list_page_size,
    parse_continuation_token,
    parse_go_duration,
    parse_retention,
    parse_rfc3339,
)
from dapr_workflows_component.workflows import Instance, RuntimeStatus, WorkflowError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("0", 0), ("300ms", 0.3), ("1.5h", 5400), ("2h45m", 9900), ("24h", 86400), ("1m30s", 90)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration("d", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "1d", "-1h", "1h 30m", "1 h", "10"])
def test_what_is_not_a_go_duration(text: str) -> None:
    with pytest.raises(WorkflowError, match="duration"):
        parse_go_duration("d", text)


def test_rfc3339_times() -> None:
    assert parse_rfc3339("t", "1970-01-01T00:00:01Z") == 1_000_000
    assert parse_rfc3339("t", "1970-01-01T01:00:01.5+01:00") == 1_500_000
    assert parse_rfc3339("t", "1970-01-01t00:00:00.123456789z") == 123_456
    for text in ("2026-01-02", "2026-01-02T15:04:05", "yesterday", "2026-13-01T00:00:00Z", ""):
        with pytest.raises(WorkflowError, match="RFC 3339"):
            parse_rfc3339("t", text)


def test_retention_policies() -> None:
    policy = parse_retention("completed=24h,anyTerminal=720h")
    assert policy.seconds[RuntimeStatus.COMPLETED] == 86400
    assert policy.seconds[RuntimeStatus.FAILED] == policy.seconds[RuntimeStatus.CANCELED] == 720 * 3600
    assert RuntimeStatus.RUNNING not in policy.seconds
    assert not parse_retention("")
    assert set(parse_retention("failed=1h,terminated=2h").seconds) == {
        RuntimeStatus.FAILED,
        RuntimeStatus.TERMINATED,
    }


def test_continuation_tokens_round_trip_any_instance_id() -> None:
    for instance_id in ("order-17", "parent:0001", "ünïcødé/ID with spaces"):
        last = Instance(instance_id, "wf", "dapr", RuntimeStatus.RUNNING, "e", 1_767_225_600_000_000, 0)
        assert parse_continuation_token(continuation_token(last)) == (last.created_at, instance_id)
    assert parse_continuation_token("") is None


def test_limits() -> None:
    assert list_page_size(None) == 50 and list_page_size("1000") == 1000
    assert bulk_limit(10_000) == 10_000
    for bad in ("0", "1001", "-1", "1e3", " 5"):
        with pytest.raises(WorkflowError, match="pageSize"):
            list_page_size(bad)
    for wrong in (0, 10_001, "5", True, None, 2.5):
        with pytest.raises(WorkflowError, match="limit"):
            bulk_limit(wrong)
