"""Fixtures: a real engine process, and real SDK workers and clients of each dialect in own processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.daprd import DaprInstallError, install_dapr
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost

DIALECTS = ("dapr", "durabletask")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path).start()
    yield proc
    proc.kill()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sdk(engine: EngineProcess, dialect: str, tmp_path: Path) -> Iterator[SdkHost]:
    """A worker and a client of `dialect` connected to `engine`."""
    host = SdkHost(dialect, engine.address(dialect), tmp_path / f"{dialect}-host.log")
    yield host
    host.close()


@pytest.fixture(scope="session")
def dapr_bin() -> Path:
    """The folder of the real daprd, placement, scheduler and dapr CLI (`scripts/install-dapr`).

    Built once per machine (cached outside the repository); the tests that need daprd fail with the
    script's error when it cannot be built, since a fake daprd would prove nothing.
    """
    try:
        return install_dapr()
    except DaprInstallError as err:
        error = str(err)
    pytest.fail(error, pytrace=False)
