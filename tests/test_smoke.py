from tests.harness.sdk_host import SdkHost


def test_activity_chain_completes_with_its_result(sdk: SdkHost) -> None:
    instance_id = sdk.call("start", workflow="chain", input={"n": 10, "start": 5})
    state = sdk.call("wait_done", instance_id=instance_id)
    assert state["status"] == "COMPLETED"
    assert state["output"] == "15"
    assert state["name"] == "chain"
