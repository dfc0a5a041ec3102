"""The arithmetic of the daprd comparison and of the statement count (the runs themselves are commands)."""

from __future__ import annotations

from typing import Any

from benchmarks.dapr_shapes import DAPR_SHAPES, LONG_CHAINS
from benchmarks.pg_statements import kind
from benchmarks.versus_daprd import _pct, ratios, report


def _row(
    wf_per_s: float, server: float, burst: float, p50: float, store: float | None = None
) -> dict[str, Any]:
    return {
        "wf_per_s": wf_per_s,
        "wf_per_s_min": wf_per_s,
        "wf_per_s_max": wf_per_s,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "burst_p50_ms": burst,
        "server_cpu_ms_per_wf": server,
        "store_cpu_ms_per_wf": store,
        "driver_cpu_ms_per_wf": 1.0,
    }


def test_ratios_are_ours_over_each_daprd_store_and_add_postgresql_cpu_only_where_asked() -> None:
    figures = {
        "shapes": {
            "single": {
                "dapr-workflows": _row(200, 1.0, 50, 40),
                "dapr-workflows (postgresql)": _row(100, 2.0, 100, 80, store=3.0),
                "daprd (redis)": _row(100, 4.0, 100, 80),
            }
        }
    }
    by_ours = {r["ours"]: r for r in ratios(figures)}
    assert set(by_ours) == {"dapr-workflows", "dapr-workflows (postgresql)"}
    sqlite = by_ours["dapr-workflows"]
    assert (sqlite["throughput"], sqlite["server_cpu"], sqlite["burst_p50"]) == (2.0, 0.25, 0.5)
    postgres = by_ours["dapr-workflows (postgresql)"]
    assert postgres["server_cpu"] == 0.5 and postgres["server_and_store_cpu"] == 1.25


def test_the_report_shows_every_section_it_has_figures_for() -> None:
    figures: dict[str, Any] = {
        "n": 10,
        "rounds": 1,
        "cpus": 2,
        "seconds": 5.0,
        "load_average": {"before": 1.0, "after": 2.0},
        "shapes": {
            "single": {"dapr-workflows": _row(200, 1.0, 50, 40), "daprd (redis)": _row(100, 4.0, 100, 80)}
        },
        "idle": {
            "dapr-workflows": {
                "p50_ms": 3.0,
                "p99_ms": 5.0,
                "round_trip_p50_ms": 4.0,
                "server_cpu_ms_per_wf": 1.0,
            }
        },
        "long": {
            "dapr-workflows": {
                str(n): {
                    "server_cpu_ms_per_activity": 0.5 * (2 if n == LONG_CHAINS[-1] else 1),
                    "activities_per_s": 9,
                }
                for n in LONG_CHAINS
            }
        },
    }
    text = report(figures)
    assert "daprd (redis)" in text and "0.25x" in text  # server CPU ratio
    assert "idle: one 1-activity workflow at a time" in text
    assert f"{LONG_CHAINS[-1]}/{LONG_CHAINS[0]}: 2.00x" in text


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (_pct(values, 50), _pct(values, 99), _pct([7.0], 99)) == (50.0, 99.0, 7.0)


def test_dapr_shapes_expect_what_their_workflows_compute() -> None:
    assert DAPR_SHAPES["single"].expected(5) == 6
    assert DAPR_SHAPES["chain"].expected(5) == 15
    assert DAPR_SHAPES["chain-500"].expected(5) == 505
    assert DAPR_SHAPES["fanout"].expected(0) == sum(range(1, 11))


def test_statement_kinds_name_the_verb_and_the_table() -> None:
    assert kind("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY") == "BEGIN (read only)"
    assert kind("UPDATE instances SET lease_token = $1") == "UPDATE instances"
    assert kind("SELECT lease_token FROM activities WHERE id = $1 FOR UPDATE") == (
        "SELECT lease_token FROM activities FOR UPDATE"
    )
    assert kind("WITH i AS (UPDATE instances SET x = 1) UPDATE activities SET y = 2") == (
        "WITH ... UPDATE activities"
    )
