"""The three workflow shapes, written once with durabletask's SDK and run unchanged on every backend."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from durabletask import task
from durabletask.worker import TaskHubGrpcWorker

FAN = 10  # activities in the chain and in the fan-out


def add_one(ctx: task.ActivityContext, value: int) -> int:
    return value + 1


def single(ctx: task.OrchestrationContext, value: int) -> Generator[task.Task[Any], Any, int]:
    """(a) One activity."""
    result: int = yield ctx.call_activity(add_one, input=value)
    return result


def chain(ctx: task.OrchestrationContext, value: int) -> Generator[task.Task[Any], Any, int]:
    """(b) FAN activities one after the other, each taking the previous one's result."""
    for _ in range(FAN):
        value = yield ctx.call_activity(add_one, input=value)
    return value


def fanout(ctx: task.OrchestrationContext, value: int) -> Generator[task.Task[Any], Any, int]:
    """(c) FAN activities at once, then their sum (fan-out, fan-in)."""
    results: list[int] = yield task.when_all(
        [ctx.call_activity(add_one, input=value + n) for n in range(FAN)]
    )
    return sum(results)


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    orchestrator: Callable[..., Any]

    def expected(self, value: int) -> int:
        if self.orchestrator is single:
            return value + 1
        if self.orchestrator is chain:
            return value + FAN
        return sum(value + n + 1 for n in range(FAN))


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("single", "1 activity", single),
        Shape("chain", f"chain of {FAN} activities", chain),
        Shape("fanout", f"fan-out of {FAN} activities, fan-in", fanout),
    )
}


def register(worker: TaskHubGrpcWorker) -> None:
    worker.add_activity(add_one)
    for shape in SHAPES.values():
        worker.add_orchestrator(shape.orchestrator)
