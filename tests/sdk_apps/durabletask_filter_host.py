"""SDK host for the work-item filter tests: a durabletask worker that registers only the
orchestrators, activities and entities named on its command line, sends work-item filters generated from
them (`use_work_item_filters()`), optionally with strict versioning, and tags what it runs.

`python -m tests.sdk_apps.durabletask_filter_host --address A --tag T --register alpha_flow,alpha_step
[--version 2.0]`; with `--no-worker`, a client only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from durabletask import client as dt_client
from durabletask import entities, task
from durabletask import worker as dt_worker

from tests.sdk_apps.durabletask_host import connection, state_dict
from tests.sdk_apps.host_loop import serve


def catalog(tag: str, version: str | None) -> dict[str, Any]:
    """Every orchestrator and activity a host may register, by name; each result says who ran it."""
    ran_by = f"{tag}@{version}" if version else tag

    def alpha_step(ctx: task.ActivityContext, _: Any) -> str:
        return ran_by

    def beta_step(ctx: task.ActivityContext, _: Any) -> str:
        return ran_by

    def alpha_flow(ctx: task.OrchestrationContext, _: Any) -> Any:
        alpha = yield ctx.call_activity("alpha_step")
        beta = yield ctx.call_activity("beta_step")  # registered elsewhere, maybe
        return {"flow": ran_by, "alpha": alpha, "beta": beta}

    def beta_flow(ctx: task.OrchestrationContext, _: Any) -> Any:
        beta = yield ctx.call_activity("beta_step")
        return {"flow": ran_by, "beta": beta}

    def gamma_flow(ctx: task.OrchestrationContext, _: Any) -> Any:
        return {"flow": ran_by}

    def versioned_step(ctx: task.ActivityContext, _: Any) -> str:
        return ran_by

    def versioned_flow(ctx: task.OrchestrationContext, _: Any) -> Any:
        step = yield ctx.call_activity("versioned_step")
        return {"flow": ran_by, "step": step, "version": ctx.version}

    def noted(ctx: entities.EntityContext, _: Any) -> Any:
        # Each operation appends who ran it to the entity's state.
        ran = [*ctx.get_state(list, []), ran_by]
        ctx.set_state(ran)
        return ran

    def alpha_entity(ctx: entities.EntityContext, input: Any) -> Any:
        return noted(ctx, input)

    def beta_entity(ctx: entities.EntityContext, input: Any) -> Any:
        return noted(ctx, input)

    def gamma_entity(ctx: entities.EntityContext, input: Any) -> Any:
        return noted(ctx, input)

    def entity_flow(ctx: task.OrchestrationContext, key: str) -> Any:
        alpha = yield ctx.call_entity(entities.EntityInstanceId("alpha_entity", key), "note")
        beta = yield ctx.call_entity(entities.EntityInstanceId("beta_entity", key), "note")
        return {"flow": ran_by, "alpha": alpha, "beta": beta}

    return (
        {f.__name__: f for f in (alpha_flow, beta_flow, gamma_flow, versioned_flow, entity_flow)}
        | {f.__name__: f for f in (alpha_step, beta_step, versioned_step)}
        | {f.__name__: f for f in (alpha_entity, beta_entity, gamma_entity)}
    )


ACTIVITIES = ("alpha_step", "beta_step", "versioned_step")
ENTITIES = ("alpha_entity", "beta_entity", "gamma_entity")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--tag", default="")
    parser.add_argument("--register", default="")
    parser.add_argument("--version", default=None)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    client = dt_client.TaskHubGrpcClient(**connection(args.address))
    worker = dt_worker.TaskHubGrpcWorker(**connection(args.address))
    functions = catalog(args.tag, args.version)
    for name in filter(None, args.register.split(",")):
        if name in ACTIVITIES:
            worker.add_activity(functions[name])
        elif name in ENTITIES:
            worker.add_entity(functions[name])
        else:
            worker.add_orchestrator(functions[name])
    if args.version:
        worker.use_versioning(
            dt_worker.VersioningOptions(
                version=args.version,
                default_version=args.version,
                match_strategy=dt_worker.VersionMatchStrategy.STRICT,
                failure_strategy=dt_worker.VersionFailureStrategy.FAIL,
            )
        )
    worker.use_work_item_filters()
    if not args.no_worker:
        worker.start()

    def start(workflow: str, instance_id: str, version: str | None = None, input: Any = None) -> str:
        return client.schedule_new_orchestration(
            workflow, input=input, instance_id=instance_id, version=version
        )

    def signal_entity(entity: str, key: str, operation: str = "note") -> None:
        client.signal_entity(entities.EntityInstanceId(entity, key), operation)

    def entity_state(entity: str, key: str) -> Any:
        """The entity's state (decoded); None while it has none (no operation of it has run)."""
        meta = client.get_entity(entities.EntityInstanceId(entity, key), include_state=True)
        raw = meta.get_state() if meta is not None else None
        return json.loads(raw) if raw else None

    ops = {
        "ping": lambda: "pong",
        "start": start,
        "signal_entity": signal_entity,
        "entity_state": entity_state,
        "get": lambda instance_id: state_dict(client.get_orchestration_state(instance_id)),
        "wait_done": lambda instance_id, timeout=60: state_dict(
            client.wait_for_orchestration_completion(instance_id, timeout=timeout)
        ),
    }

    def shutdown() -> None:
        if not args.no_worker:
            worker.stop()

    serve(ops, shutdown)


if __name__ == "__main__":
    main()
