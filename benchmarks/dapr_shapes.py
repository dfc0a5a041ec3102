"""The workflow shapes in Dapr's workflow SDK (`dapr.ext.workflow`), run unchanged on every backend.

The same shapes as `benchmarks.shapes` (durabletask's SDK), plus longer chains for the cost of a long
history. The SDK is imported only by the driver process (`register`): the coordinator reads the names
and expected results without importing it, so it may import durabletask's SDK beside this module.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime

FAN = 10  # activities of the fan-out, and of the `chain` shape
LONG_CHAINS = (10, 100, 500)  # activities of the long-history chains (`chain-100`, ...)


def add_one(ctx: WorkflowActivityContext, value: int) -> int:
    return value + 1


def single(ctx: DaprWorkflowContext, value: int) -> Generator[Any, Any, int]:
    """One activity."""
    result: int = yield ctx.call_activity(add_one, input=value)
    return result


def chain_of(length: int) -> Callable[[DaprWorkflowContext, int], Generator[Any, Any, int]]:
    """`length` activities one after the other, each taking the previous one's result."""

    def chain(ctx: DaprWorkflowContext, value: int) -> Generator[Any, Any, int]:
        for _ in range(length):
            value = yield ctx.call_activity(add_one, input=value)
        return value

    return chain


def fanout(ctx: DaprWorkflowContext, value: int) -> Generator[Any, Any, int]:
    """FAN activities at once, then their sum (fan-out, fan-in)."""
    from dapr.ext.workflow import when_all

    results: list[int] = yield when_all([ctx.call_activity(add_one, input=value + n) for n in range(FAN)])
    return sum(results)


@dataclass(frozen=True)
class DaprShape:
    name: str  # also the workflow's registered name
    description: str
    activities: int  # activities per workflow
    workflow: Callable[..., Any]

    def expected(self, value: int) -> int:
        if self.workflow is fanout:
            return sum(value + n + 1 for n in range(FAN))
        return value + self.activities


def _chain_shape(length: int) -> DaprShape:
    name = "chain" if length == FAN else f"chain-{length}"
    return DaprShape(name, f"chain of {length} activities", length, chain_of(length))


DAPR_SHAPES: dict[str, DaprShape] = {
    s.name: s
    for s in (
        DaprShape("single", "1 activity", 1, single),
        _chain_shape(FAN),
        DaprShape("fanout", f"fan-out of {FAN} activities, fan-in", FAN, fanout),
        *(_chain_shape(n) for n in LONG_CHAINS if n != FAN),
    )
}


def _same(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


def register(
    runtime: WorkflowRuntime,
    workflow_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]] = _same,
    activity_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]] = _same,
) -> None:
    """Every shape's workflow and the activity under their names, each through its wrapper (the
    driver's counts of the work its worker ran)."""
    runtime.register_activity(activity_wrapper(add_one), name="add_one")
    for shape in DAPR_SHAPES.values():
        runtime.register_workflow(workflow_wrapper(shape.workflow), name=shape.name)
