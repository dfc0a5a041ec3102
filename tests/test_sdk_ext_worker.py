"""The worker helper of the SDK extension (the dapr SDK may be imported here; durabletask may not)."""

import pytest
from dapr_workflows_ext import engine_address


def test_address_comes_from_the_argument_then_the_variable_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAPR_WORKFLOWS_ENGINE_ADDRESS", raising=False)
    assert engine_address() == ("127.0.0.1", "4100")
    monkeypatch.setenv("DAPR_WORKFLOWS_ENGINE_ADDRESS", "engine.local:5000")
    assert engine_address() == ("engine.local", "5000")
    assert engine_address("[::1]:6000") == ("::1", "6000")


@pytest.mark.parametrize("bad", ["no-port", "host:", ":4100", "host:port"])
def test_a_malformed_address_is_refused_with_its_value(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        engine_address(bad)
