"""The arithmetic of a batch split over several driver processes (`benchmarks.driver_pool`)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.driver_pool import aggregate
from benchmarks.versus_daprd import Round, _median_round, _split, activity_shares, report


def _reply(started_at: float, completed_at: list[float], prefix: str) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "start_seconds": 0.5,
        "completed_at": completed_at,
        "done_at": max(completed_at) + 0.1,
        "latencies_ms": [100.0] * len(completed_at),
        "round_trip_ms": [],
        "ids": [f"{prefix}-{i}" for i in range(len(completed_at))],
    }


def test_a_batch_counts_from_the_first_start_of_any_driver_to_the_last_completion() -> None:
    out = aggregate([_reply(10.0, [11.0, 12.0], "d0"), _reply(10.5, [13.0], "d1")])
    assert out["makespan_seconds"] == 3.0  # 13.0 - 10.0, not either driver's own span
    assert out["burst_ms"] == [1000.0, 2000.0, 3000.0]  # from driver 0's first start call
    assert out["wall_seconds"] == pytest.approx(3.1)
    assert out["start_seconds"] == 1.0  # driver 1 finished starting at 11.0
    assert len(out["latencies_ms"]) == 3 and out["ids"] == ["d0-0", "d0-1", "d1-0"]


def test_each_workers_part_of_the_activities() -> None:
    drivers = [{"activities": 30}, {"activities": 10}]
    assert activity_shares(drivers) == [0.75, 0.25]
    assert _split(drivers) == "  activities per worker 75%/25%"
    assert _split([{"activities": 5}]) == ""  # one driver: nothing to split
    assert activity_shares([{"activities": 0}, {"activities": 0}]) == [0.0, 0.0]


def test_the_median_round_and_the_report_carry_the_split() -> None:
    rounds = [
        Round(10, 1, 2, 1, 1, None, 1, drivers=[{"activities": a}, {"activities": 10 - a}]) for a in (4, 5, 6)
    ]
    row = _median_round(rounds)
    assert row["activity_shares"] == [0.5, 0.5]
    figures: dict[str, Any] = {
        "n": 10,
        "drivers": 2,
        "rounds": 3,
        "cpus": 2,
        "seconds": 1.0,
        "load_average": {"before": 1.0, "after": 1.0},
        "shapes": {"single": {"dapr-workflows": row}},
        "idle": {},
        "long": {},
    }
    text = report(figures)
    assert "2 driver process(es) per backend" in text and "50%/50%" in text
