"""Fixtures: a real engine process, and real SDK workers and clients of each dialect in own processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.daprd import DaprInstallError, install_dapr
from tests.harness.engine_process import EngineProcess
from tests.harness.postgres import PostgresServer, PostgresUnavailable
from tests.harness.redis_server import RedisServer, RedisUnavailable
from tests.harness.reference_backend import reference_backend
from tests.harness.sdk_host import SdkHost

DIALECTS = ("dapr", "durabletask")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module that sets `STORES = ("sqlite", "postgresql")` runs its engine tests on each."""
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", getattr(metafunc.module, "STORES", ("sqlite",)))


STORE_KINDS = ("sqlite", "postgresql")
# On PostgreSQL, a killed engine's leases expire after --store-lease-seconds; the restarted engine
# (a new one, as far as the store can tell) then takes the work. Short here, so kill tests run fast.
POSTGRES_ENGINE_ARGS = ("--store-lease-seconds", "2", "--poll-seconds", "0.3")


def engine_on(store_kind: str, request: pytest.FixtureRequest, workdir: Path, *args: str) -> EngineProcess:
    """An engine (not started) on its own SQLite file, or on a fresh PostgreSQL database."""
    if store_kind == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
        return EngineProcess(workdir, *POSTGRES_ENGINE_ARGS, *args, store_url=url)
    return EngineProcess(workdir, *args)


@pytest.fixture
def engine(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[EngineProcess]:
    proc = engine_on(store_kind, request, tmp_path).start()
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


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Callable[[str, str], SdkHost]]:
    """Starts SDK hosts (worker and client); closes the ones still alive at the end."""
    started: list[SdkHost] = []

    def start(dialect: str, address: str) -> SdkHost:
        host = SdkHost(dialect, address, tmp_path / f"{dialect}-host-{len(started) + 1}.log")
        started.append(host)
        return host

    yield start
    for host in started:
        if host.proc.poll() is None:
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's real PostgreSQL, started once per test session on a loopback port, then removed."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Debian's real redis-server (a pub/sub broker for triggers), once per session, on a loopback port."""
    try:
        server = RedisServer().start()
    except RedisUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


# A durabletask worker and client on our engine (`engine`, per store) and on durabletask's reference
# backend, for tests that compare the two (entities, rewind).
@pytest.fixture
def ours(engine: EngineProcess, tmp_path: Path) -> Iterator[SdkHost]:
    host = SdkHost("durabletask", engine.address("durabletask"), tmp_path / "ours.log")
    yield host
    host.close()


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[SdkHost]:
    """A worker and client on durabletask's reference backend, in a process of its own."""
    with reference_backend(tmp_path / "reference-backend.log") as address:
        host = SdkHost("durabletask", address, tmp_path / "reference.log")
        yield host
        host.close()
