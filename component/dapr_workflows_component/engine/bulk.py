"""Management over many instances: a page of a filtered listing, counts by status, and bulk purge
and terminate by filter, carried out server-side with a cap per request.

Functions of the engine's public API (`query`, `purge`, `terminate`) and of the store's instance
query; the filters come validated from `management_rules.instance_filter`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..management_rules import bulk_query, continuation_token, parse_continuation_token
from ..workflows import ErrorCode, Instance, InstanceQuery, RuntimeStatus, WorkflowError

if TYPE_CHECKING:
    from . import Engine

log = logging.getLogger("dapr_workflows.engine")


async def list_page(
    engine: Engine, query: InstanceQuery, size: int, order: str, token: str | None
) -> tuple[list[Instance], str | None]:
    """One page of the instances the query matches, in creation order, and the next page's token."""
    query.order = order
    query.after = parse_continuation_token(token)
    query.limit = size + 1  # one more tells whether a page follows
    found = await engine.query(query)
    following = continuation_token(found[size - 1]) if len(found) > size else None
    return found[:size], following


async def count_matching(engine: Engine, query: InstanceQuery) -> dict[RuntimeStatus, int]:
    return await engine.store.read(lambda t: t.count_by_status(query))


async def counts(engine: Engine, query: InstanceQuery) -> dict[str, int]:
    """How many instances each status has among those the query's other filters match."""
    query.statuses = frozenset()
    found = await count_matching(engine, query)
    return {s.name: found.get(s, 0) for s in RuntimeStatus}


@dataclass
class BulkResult:
    matched: int  # how many instances the filter matched (before the cap)
    affected: int  # how many were purged (with their children) or terminated
    dry_run: bool
    more: bool  # matches the cap left untouched

    def to_json(self) -> dict[str, object]:
        return {"matched": self.matched, "affected": self.affected, "dryRun": self.dry_run, "more": self.more}


async def _matches(
    engine: Engine, query: InstanceQuery | None, dry_run: bool, limit: int
) -> tuple[int, list[Instance]]:
    if query is None:
        return 0, []
    matched = sum((await count_matching(engine, query)).values())
    if dry_run or not matched:
        return matched, []
    query.order, query.limit = "oldest", limit
    return matched, await engine.query(query)


def _skippable(err: WorkflowError) -> bool:
    """Gone (purged with its parent, or by another caller) or changed state since it matched."""
    return err.code in (ErrorCode.NOT_FOUND, ErrorCode.FAILED_PRECONDITION)


async def bulk_purge(
    engine: Engine, query: InstanceQuery, dry_run: bool, limit: int, force: bool = False
) -> BulkResult:
    """Purges up to `limit` matching instances, terminal ones only unless `force`, each with its
    children."""
    matched, batch = await _matches(engine, bulk_query(query, terminal=True, force=force), dry_run, limit)
    affected = 0
    for inst in batch:
        try:
            affected += await engine.purge(inst.instance_id, recursive=True, force=force)
        except WorkflowError as err:
            if not _skippable(err):
                raise
    if batch:
        log.info("bulk purge: %d matched, %d purged", matched, affected)
    return BulkResult(matched, affected, dry_run, matched > (limit if dry_run else len(batch)))


async def bulk_terminate(
    engine: Engine, query: InstanceQuery, dry_run: bool, limit: int, output: str | None = None
) -> BulkResult:
    """Terminates up to `limit` matching instances that have not finished (each with its children)."""
    matched, batch = await _matches(engine, bulk_query(query, terminal=False), dry_run, limit)
    affected = 0
    for inst in batch:
        try:
            await engine.terminate(inst.instance_id, output, recursive=True)
            affected += 1
        except WorkflowError as err:
            if not _skippable(err):
                raise
    if batch:
        log.info("bulk terminate: %d matched, %d terminated", matched, affected)
    return BulkResult(matched, affected, dry_run, matched > (limit if dry_run else len(batch)))
