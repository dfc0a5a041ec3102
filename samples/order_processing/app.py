"""The order-processing worker: Dapr's workflow SDK, running its workflows on dapr-workflows.

`OrderProcessingWorkflow` takes an order shaped as in the Dapr docs' examples,
`{"Name": "Paperclips", "TotalCost": 99.95, "Quantity": 1}`, and

1. notifies that the order arrived,
2. reserves the items (an order that cannot be served ends here),
3. when the order costs more than APPROVAL_THRESHOLD, asks for approval and waits for the
   `approval_event` external event, giving up after APPROVAL_TIMEOUT,
4. runs the child workflow `FulfilOrderWorkflow`: the payment (an activity with a retry policy;
   the pretend payment service fails the first attempt of every order) and the inventory update,
5. notifies again and returns a summary of the order.

The inventory and the payment service are stand-ins kept in this process's memory; the workflow
state itself is kept by the engine, so a worker that is stopped and started again carries on
where it left off. The worker takes its work from the engine at $DAPR_WORKFLOWS_ENGINE_ADDRESS
(default 127.0.0.1:4100, where `dapr-workflows serve` listens), not from daprd.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
from dapr.ext.workflow.logger.options import LoggerOptions
from dapr_workflows_ext import workflow_runtime

APPROVAL_THRESHOLD = 50.0
APPROVAL_TIMEOUT = timedelta(seconds=60)
# For the calls to the (pretend) payment and inventory services.
SERVICE_RETRIES = wf.RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=3,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=10),
)

log = logging.getLogger("order-worker")
# The SDK's own log says a lot per workflow step at INFO; its warnings (a failed attempt) stay.
runtime = workflow_runtime(logger_options=LoggerOptions(log_level="WARNING"))

# Stand-ins for an inventory database and a payment service.
_stock: dict[str, int] = {"Paperclips": 100, "Staples": 20, "Binder clips": 0}
_payment_attempts: dict[str, int] = {}
_lock = threading.Lock()


def _item(order: dict[str, Any]) -> str:
    return str(order["Name"])


def _quantity(order: dict[str, Any]) -> int:
    return int(order.get("Quantity", 1))


def _total(order: dict[str, Any]) -> float:
    return round(float(order["TotalCost"]), 2)


# ------------------------------------------------------------------------------------- activities


@runtime.activity(name="notify")
def notify(ctx: wf.WorkflowActivityContext, message: str) -> None:
    log.info("notification: %s", message)


@runtime.activity(name="reserve_inventory")
def reserve_inventory(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        in_stock = _stock.get(_item(order), 0)
    available = in_stock >= _quantity(order)
    log.info("inventory: %d %s in stock, %s", in_stock, _item(order), "enough" if available else "too few")
    return {"available": available, "in_stock": in_stock}


@runtime.activity(name="request_approval")
def request_approval(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> None:
    log.info(
        "approval requested for order %s: %s x %s, %.2f",
        ctx.workflow_id,
        _quantity(order),
        _item(order),
        _total(order),
    )


@runtime.activity(name="process_payment")
def process_payment(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    order_id = str(order["order_id"])
    with _lock:
        attempt = _payment_attempts.get(order_id, 0) + 1
        _payment_attempts[order_id] = attempt
    if attempt == 1:
        # The retry policy of the call runs this activity again, after first_retry_interval.
        log.info("payment for %s: no answer from the payment service (simulated); retrying", order_id)
        raise ConnectionError("the payment service did not answer (simulated)")
    log.info("payment for %s: charged %.2f on attempt %d", order_id, _total(order), attempt)
    return {"charged": _total(order), "attempts": attempt}


@runtime.activity(name="update_inventory")
def update_inventory(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> int:
    with _lock:
        in_stock = _stock.get(_item(order), 0)
        if in_stock < _quantity(order):
            raise ValueError(f"only {in_stock} {_item(order)} left")
        left = _stock[_item(order)] = in_stock - _quantity(order)
    log.info("inventory: %d %s left", left, _item(order))
    return left


# -------------------------------------------------------------------------------------- workflows


@runtime.workflow(name="FulfilOrderWorkflow")
def fulfil_order(ctx: wf.DaprWorkflowContext, order: dict[str, Any]) -> Any:
    """The child workflow: charge the order, then take the items out of the inventory."""
    payment = yield ctx.call_activity(process_payment, input=order, retry_policy=SERVICE_RETRIES)
    left = yield ctx.call_activity(update_inventory, input=order, retry_policy=SERVICE_RETRIES)
    return {"payment": payment, "left_in_stock": left}


@runtime.workflow(name="OrderProcessingWorkflow")
def order_processing(ctx: wf.DaprWorkflowContext, order: dict[str, Any]) -> Any:
    order_id = ctx.instance_id
    order = {**order, "order_id": order_id}
    total = _total(order)
    summary: dict[str, Any] = {"order_id": order_id, "item": _item(order), "quantity": _quantity(order)}
    summary["total"] = total

    ctx.set_custom_status("received")
    yield ctx.call_activity(
        notify, input=f"order {order_id}: {_quantity(order)} x {_item(order)} for {total:.2f}"
    )

    stock = yield ctx.call_activity(reserve_inventory, input=order)
    if not stock["available"]:
        yield ctx.call_activity(notify, input=f"order {order_id}: not enough {_item(order)} in stock")
        return {**summary, "status": "rejected", "reason": "not enough in stock"}

    if total > APPROVAL_THRESHOLD:
        yield ctx.call_activity(request_approval, input=order)
        ctx.set_custom_status("waiting for approval")
        approval = ctx.wait_for_external_event("approval_event")
        timeout = ctx.create_timer(APPROVAL_TIMEOUT)
        winner = yield wf.when_any([approval, timeout])
        if winner is timeout:
            yield ctx.call_activity(notify, input=f"order {order_id}: no approval in time, cancelled")
            return {**summary, "status": "cancelled", "reason": "no approval in time"}
        decision = approval.get_result() or {}
        if not decision.get("approved"):
            yield ctx.call_activity(notify, input=f"order {order_id}: rejected by {decision.get('approver')}")
            return {**summary, "status": "rejected", "reason": "not approved"}
        summary["approved_by"] = decision.get("approver")

    ctx.set_custom_status("paying")
    fulfilment = yield ctx.call_child_workflow(
        fulfil_order, input=order, instance_id=f"{order_id}-fulfilment"
    )

    ctx.set_custom_status("done")
    yield ctx.call_activity(notify, input=f"order {order_id}: paid and on its way")
    return {**summary, **fulfilment, "status": "completed"}


def main() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runtime.start()
    log.info("worker started: OrderProcessingWorkflow and FulfilOrderWorkflow are ready")
    try:
        stop.wait()
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
