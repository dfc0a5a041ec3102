"""A Dapr app hosting the workflow of the Dapr docs' DaprClient example, with Dapr's workflow SDK.

`--address` is the sidecar its `WorkflowRuntime` takes work from: daprd's gRPC port (daprd's
built-in engine) or the dapr-workflows engine; the workflow is the same either way.

`hello_world_wf` is the docs' workflow made observable: two activities add 1 and 10 to a counter,
it waits for `event1`, a third activity adds 100, and its custom status reports the counter and
the event it got. Then it waits for `stop`, so it is still running when the docs terminate it.
`testWorkflow` (the docs' "Manage workflows" sequence) waits for `stop` from the start.
"""

from __future__ import annotations

from typing import Any

import dapr.ext.workflow as wf

from tests.sdk_apps.host_loop import parse_args, serve


def register(runtime: wf.WorkflowRuntime) -> None:
    @runtime.activity(name="hello_act")
    def hello_act(ctx: wf.WorkflowActivityContext, value: int) -> int:
        return value

    @runtime.workflow(name="hello_world_wf")
    def hello_world_wf(ctx: wf.DaprWorkflowContext, input: Any) -> Any:
        counter = 0
        for value in (1, 10):
            counter += yield ctx.call_activity(hello_act, input=value)
        ctx.set_custom_status({"counter": counter, "input": input, "event1": None})
        event = yield ctx.wait_for_external_event("event1")
        counter += yield ctx.call_activity(hello_act, input=100)
        ctx.set_custom_status({"counter": counter, "input": input, "event1": event})
        stop = yield ctx.wait_for_external_event("stop")
        return stop

    @runtime.workflow(name="testWorkflow")
    def test_workflow(ctx: wf.DaprWorkflowContext, input: Any) -> Any:
        # The workflow of the docs' "Manage workflows" sequence: running until terminated.
        stop = yield ctx.wait_for_external_event("stop")
        return [input, stop]


def main() -> None:
    args = parse_args()
    host, _, port = args.address.rpartition(":")
    runtime = wf.WorkflowRuntime(host=host, port=port)
    register(runtime)
    runtime.start()
    serve({"ping": lambda: "pong"}, runtime.shutdown)


if __name__ == "__main__":
    main()
