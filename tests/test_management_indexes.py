"""Every filter of the management listing (and retention's query) is served by an index: the
query plan of SQLite (`EXPLAIN QUERY PLAN`) and of PostgreSQL (`EXPLAIN`) has no full scan of the
instances table. PostgreSQL is asked with sequential scans priced out, so that a small table's
plan still shows whether an index *can* serve the filter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dapr_workflows_component.store import open_store
from dapr_workflows_component.store.sql import SqlTx, query_sql
from dapr_workflows_component.workflows import InstanceQuery
from dapr_workflows_component.workflows import RuntimeStatus as S

COMPLETED = frozenset({S.COMPLETED})

# filter -> (query, the column its index condition names)
CASES: dict[str, tuple[InstanceQuery, str]] = {
    "status": (InstanceQuery(statuses=COMPLETED, order="newest"), "status"),
    "status, next page": (InstanceQuery(statuses=COMPLETED, order="oldest", after=(10**15, "x")), "status"),
    "several statuses": (InstanceQuery(statuses=frozenset({S.RUNNING, S.FAILED}), order="newest"), "status"),
    "name": (InstanceQuery(name="order_processing", order="newest"), "name"),
    "created": (InstanceQuery(created_from=1, created_to=2, order="newest"), "created_at"),
    "updated": (InstanceQuery(updated_from=1, updated_to=2, order="newest"), "updated_at"),
    "idPrefix": (InstanceQuery(id_prefix="order-", order="newest"), "instance_id"),
    "parentInstanceID": (InstanceQuery(parent_instance_id="parent", order="newest"), "parent_instance_id"),
    "retention": (InstanceQuery(statuses=COMPLETED, completed_to=5, order="completed"), "completed_at"),
    "listing by ID": (InstanceQuery(after_id="a"), "instance_id"),
}
# A substring has no index to search; the scan runs in page order and stops at a full page.
IN_PAGE_ORDER = {
    "no filter": InstanceQuery(order="newest"),
    "customStatus": InstanceQuery(custom_status="waiting", order="newest"),
}


def plans(url: str) -> dict[str, list[str]]:
    async def explain() -> dict[str, list[str]]:
        store = open_store(url)

        def run(t: Any) -> dict[str, list[str]]:
            assert isinstance(t, SqlTx)
            out = {}
            for name, query in {**{k: v[0] for k, v in CASES.items()}, **IN_PAGE_ORDER}.items():
                sql, args = query_sql(query, t._id_prefix, t._contains)
                if url.startswith("sqlite"):
                    out[name] = [str(r[3]) for r in t._execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()]
                else:
                    t._execute("SET LOCAL enable_seqscan = off")
                    out[name] = [str(r[0]) for r in t._execute("EXPLAIN " + sql, args).fetchall()]
            return out

        try:
            return await store.run(run)
        finally:
            await store.close()

    return asyncio.run(explain())


def test_sqlite_filters_search_an_index(tmp_path: Path) -> None:
    found = plans(f"sqlite:///{tmp_path / 'plans.db'}")
    for name, (_, column) in CASES.items():
        lines = found[name]
        assert not any(line.startswith("SCAN instances") for line in lines), (name, lines)
        searches = [line for line in lines if line.startswith("SEARCH instances USING")]
        assert searches and all(f"({column}" in s or f" {column}" in s for s in searches), (name, lines)
    for name in IN_PAGE_ORDER:
        assert found[name][0] == "SCAN instances USING INDEX instances_created_id", found[name]
        assert not any("TEMP B-TREE" in line for line in found[name]), found[name]


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_sqlite_one_status_needs_no_sort(tmp_path: Path, order: str) -> None:
    query = InstanceQuery(statuses=COMPLETED, order=order)
    CASES[f"status {order}"] = (query, "status")
    try:
        lines = plans(f"sqlite:///{tmp_path / 'plans.db'}")[f"status {order}"]
    finally:
        del CASES[f"status {order}"]
    assert lines == ["SEARCH instances USING INDEX instances_status_created (status=?)"]


def test_postgresql_filters_search_an_index(postgres_url: str) -> None:
    found = plans(postgres_url)
    for name, (_, column) in CASES.items():
        plan = "\n".join(found[name])
        assert "Seq Scan" not in plan, (name, plan)
        assert "Index Cond" in plan and column in plan.partition("Index Cond")[2], (name, plan)
    for name in IN_PAGE_ORDER:
        plan = "\n".join(found[name])
        assert "Index Scan Backward using instances_created_id" in plan and "Sort" not in plan, plan
