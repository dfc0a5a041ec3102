"""`--drivers K` of the benchmark against daprd: K driver processes on one backend share a batch.

A tiny batch on our engine (Dapr's dialect) and on daprd's built-in engine (in-memory actor store),
two drivers each: both workers ran part of the work, and the aggregate counts every workflow once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.dapr_shapes import DAPR_SHAPES
from benchmarks.daprd_backend import DaprdStack, DaprEngineProcess
from benchmarks.driver_pool import DriverPool, shares
from benchmarks.versus_daprd import activity_shares

N = 24


def _pool(address: str, workdir: Path) -> DriverPool:
    pool = DriverPool(2, workdir / "driver")
    pool.args = ["--address", address, "--timeout=60"]
    pool.start()
    return pool


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[DriverPool]:
    engine = DaprEngineProcess(tmp_path)
    engine.start()
    pool = _pool(engine.address, tmp_path)
    try:
        yield pool
    finally:
        try:
            pool.stop()
        finally:
            engine.stop()


@pytest.fixture
def daprd(tmp_path: Path, dapr_bin: Path) -> Iterator[DriverPool]:
    stack = DaprdStack(tmp_path, "in-memory")
    try:
        stack.start()
        pool = _pool(stack.address, tmp_path)
        try:
            yield pool
        finally:
            pool.stop()
    finally:
        stack.stop()


def _check_shared(reply: dict[str, Any], shape: str) -> None:
    activities = DAPR_SHAPES[shape].activities
    assert len(reply["latencies_ms"]) == len(reply["burst_ms"]) == N
    assert len(set(reply["ids"])) == N  # every workflow counted once, none under two drivers
    assert len({i.split("-", 1)[0] for i in reply["ids"]}) == 2
    drivers = reply["drivers"]
    assert [d["workflows"] for d in drivers] == shares(N, 2) == [12, 12]
    # Each worker ran part of the work, whichever client started it; all of it ran exactly once.
    assert all(d["activities"] > 0 and d["turns"] > 0 for d in drivers), drivers
    assert sum(d["activities"] for d in drivers) == N * activities
    assert all(d["cpu_seconds"] > 0 for d in drivers) and reply["cpu_seconds"] > 0
    assert 0 < reply["makespan_seconds"] <= reply["wall_seconds"]
    assert max(reply["burst_ms"]) == pytest.approx(reply["makespan_seconds"] * 1000)
    assert sum(activity_shares(drivers)) == pytest.approx(1.0)


@pytest.mark.parametrize("shape", ["single", "fanout"])
def test_two_drivers_share_a_batch_on_our_engine(ours: DriverPool, shape: str) -> None:
    _check_shared(ours.batch(shape, N), shape)


def test_two_drivers_share_a_batch_on_daprd(daprd: DriverPool) -> None:
    _check_shared(daprd.batch("fanout", N), "fanout")


def test_an_idle_batch_is_started_by_the_first_driver_alone(ours: DriverPool) -> None:
    reply = ours.batch("single", 4, idle=True)
    assert [d["workflows"] for d in reply["drivers"]] == [4, 0]
    assert len(reply["round_trip_ms"]) == 4 and sum(d["activities"] for d in reply["drivers"]) == 4


def test_a_pool_shrinks_to_one_driver_and_grows_back_under_new_instance_ids(ours: DriverPool) -> None:
    ours.resize(1)
    assert len(ours.drivers) == 1
    idle = ours.batch("single", 3, idle=True)
    assert [d["activities"] for d in idle["drivers"]] == [3]  # the only worker left ran all of it
    ours.resize(2)
    reply = ours.batch("single", N)
    # The new driver's instance IDs are its own: none of the first one's, none of a stopped driver's.
    assert {i.split("-", 1)[0] for i in reply["ids"]} == {"d0", "d2"}
    _check_shared(reply, "single")


def test_shares_split_n_as_evenly_as_it_goes() -> None:
    assert shares(7, 3) == [3, 2, 2] and shares(1, 2) == [1, 0] and sum(shares(300, 4)) == 300
    with pytest.raises(ValueError, match="--drivers"):
        DriverPool(0, Path("driver"))
