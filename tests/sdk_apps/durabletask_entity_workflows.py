"""Durable entities of the entity tests, written with Microsoft's durabletask SDK after its entity
samples: a function-based `counter`, a class-based `Account`, and orchestrations that signal, call
and lock them.

- `counter` (function): `add` n, `get`, `fail` (raises; the state is rolled back), `forward`
  {to, amount} (signals another counter), `start` {workflow, instance_id, input} (starts an
  orchestration), `delete`.
- `Account` (class): `deposit` n, `withdraw` n (raises when the balance is too low), `balance`.
- `counter_flow` {key}: signals `add` 5, calls `add` 3, returns the call of `get`.
- `account_flow` {key}: deposits 10, withdraws 25 (fails: caught), withdraws 4; returns
  [balance, the failure's text contained "insufficient"].
- `transfer_flow` {source, target, amount, wait_event?}: locks both accounts, moves `amount` if
  the source has it (waiting for the event `wait_event` inside the critical section, if given),
  returns [source balance, target balance].
- `lock_then_fail` {key}: locks a counter, then raises.
- `delayed_signal_flow` {key, seconds}: signals `add` 1 to a counter `seconds` from now.
- `echo_flow` (started by an entity): returns its input.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from durabletask import client as dt_client
from durabletask import entities, task
from durabletask import worker as dt_worker


def counter(ctx: entities.EntityContext, input: Any) -> Any:
    op = ctx.operation
    if op == "add":
        ctx.set_state(ctx.get_state(int, 0) + int(input))
    elif op == "get":
        return ctx.get_state(int, 0)
    elif op == "fail":
        ctx.set_state(-1000)  # rolled back with the failure
        raise ValueError(f"counter {ctx.entity_id.key} fails on purpose")
    elif op == "forward":
        ctx.signal_entity(entities.EntityInstanceId("counter", input["to"]), "add", input["amount"])
    elif op == "start":
        ctx.schedule_new_orchestration(
            input["workflow"], input=input.get("input"), instance_id=input["instance_id"]
        )
    elif op == "delete":
        ctx.set_state(None)
    return None


class Account(entities.DurableEntity):
    def deposit(self, amount: int) -> int:
        balance = self.get_state(int, 0) + amount
        self.set_state(balance)
        return balance

    def withdraw(self, amount: int) -> int:
        balance = self.get_state(int, 0)
        if amount > balance:
            raise ValueError(f"insufficient funds: {balance} < {amount}")
        self.set_state(balance - amount)
        return balance - amount

    def balance(self) -> int:
        return self.get_state(int, 0)


def _counter(key: str) -> entities.EntityInstanceId:
    return entities.EntityInstanceId("counter", key)


def _account(key: str) -> entities.EntityInstanceId:
    return entities.EntityInstanceId("Account", key)


def counter_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    ctx.signal_entity(_counter(args["key"]), "add", 5)
    yield ctx.call_entity(_counter(args["key"]), "add", 3)
    value = yield ctx.call_entity(_counter(args["key"]), "get")
    return value


def account_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    account = _account(args["key"])
    yield ctx.call_entity(account, "deposit", 10)
    refused = False
    try:
        yield ctx.call_entity(account, "withdraw", 25)
    except task.TaskFailedError as err:
        refused = "insufficient" in str(err)
    yield ctx.call_entity(account, "withdraw", 4)
    balance = yield ctx.call_entity(account, "balance")
    return [balance, refused]


def transfer_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    source, target = _account(args["source"]), _account(args["target"])
    with (yield ctx.lock_entities([source, target])):
        if args.get("wait_event"):
            yield ctx.wait_for_external_event(args["wait_event"])
        have = yield ctx.call_entity(source, "balance")
        if have >= args["amount"]:
            yield ctx.call_entity(source, "withdraw", args["amount"])
            yield ctx.call_entity(target, "deposit", args["amount"])
        left = yield ctx.call_entity(source, "balance")
        got = yield ctx.call_entity(target, "balance")
    return [left, got]


def lock_then_fail(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    with (yield ctx.lock_entities([_counter(args["key"])])):
        yield ctx.call_entity(_counter(args["key"]), "add", 1)
        raise RuntimeError("fails while holding the lock")


def delayed_signal_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    when = ctx.current_utc_datetime + timedelta(seconds=args["seconds"])
    ctx.signal_entity(_counter(args["key"]), "add", 1, signal_time=when)
    return "sent"


def echo_flow(ctx: task.OrchestrationContext, args: Any) -> Any:
    return args


def child_at_entity_id(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
    return (yield ctx.call_sub_orchestrator(echo_flow, input=1, instance_id=args["child_id"]))


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    worker.add_entity(counter)
    worker.add_entity(Account)
    for orchestrator in (
        counter_flow,
        account_flow,
        transfer_flow,
        lock_then_fail,
        delayed_signal_flow,
        echo_flow,
        child_at_entity_id,
    ):
        worker.add_orchestrator(orchestrator)


def extra_ops(client: dt_client.TaskHubGrpcClient) -> dict[str, Any]:
    def entity_id(entity: str, key: str) -> entities.EntityInstanceId:
        return entities.EntityInstanceId(entity, key)

    def signal_entity(
        entity: str, key: str, operation: str, input: Any = None, delay: float | None = None
    ) -> None:
        when = datetime.now(timezone.utc) + timedelta(seconds=delay) if delay is not None else None
        client.signal_entity(entity_id(entity, key), operation, input=input, signal_time=when)

    def get_entity(entity: str, key: str, include_state: bool = True) -> dict[str, Any] | None:
        meta = client.get_entity(entity_id(entity, key), include_state=include_state)
        if meta is None:
            return None
        return {
            "id": str(meta.id),
            # The state as the entity last stored it (JSON text), decoded.
            "state": json.loads(raw) if include_state and (raw := meta.get_state()) else None,
            "locked_by": meta._locked_by or None,
            "backlog": meta.backlog_queue_size,
        }

    def query_entities(
        prefix: str | None = None, include_transient: bool = False, page_size: int = 0
    ) -> list[str]:
        query = dt_client.EntityQuery(
            instance_id_starts_with=prefix, include_transient=include_transient, page_size=page_size or None
        )
        return sorted(str(m.id) for m in client.get_all_entities(query))

    def clean_entities() -> list[int]:
        result = client.clean_entity_storage()
        return [result.empty_entities_removed, result.orphaned_locks_released]

    return {
        "signal_entity": signal_entity,
        "get_entity": get_entity,
        "query_entities": query_entities,
        "clean_entities": clean_entities,
    }
