"""The component socket: its mode is set when it is created, a folder other users control is
refused unless allowed, and only a stale socket of ours is ever replaced.

The hostile-folder tests need a second user: as root they create one with `useradd` (removed at the
end) and run the other user's part as that user; without root they are skipped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.engine_process import EngineProcess

HOSTILE_USER = "dw-test-hostile"
SOCKET = "dapr-workflows.sock"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def folder() -> Iterator[Path]:
    # Unix socket paths are limited to about 100 bytes: pytest's tmp paths can be longer.
    path = Path(tempfile.mkdtemp(prefix="dw-sf-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def hostile() -> Iterator[pwd.struct_passwd]:
    """Another, non-root user of this machine."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to create a second user and act as it")
    created = False
    try:
        user = pwd.getpwnam(HOSTILE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", HOSTILE_USER],
            check=True,
        )
        created = True
        user = pwd.getpwnam(HOSTILE_USER)
    yield user
    if created:
        subprocess.run(["userdel", HOSTILE_USER], check=False)


def engine_in(folder: Path, workdir: Path, *args: str, log_name: str = "engine.log") -> EngineProcess:
    return EngineProcess(workdir, "--socket-folder", str(folder), *args, log_name=log_name)


def refused(proc: EngineProcess, *fragments: str) -> str:
    with pytest.raises(RuntimeError) as info:
        proc.start()
    message = str(info.value)
    assert "exited with" in message, message
    assert "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_the_socket_is_created_with_the_socket_mode(folder: Path, tmp_path: Path) -> None:
    proc = engine_in(folder, tmp_path).start()
    try:
        assert mode_of(folder / SOCKET) == 0o777, "daprd of any user may connect by default"
        assert stat.S_ISSOCK(os.lstat(folder / SOCKET).st_mode)
        assert sorted(os.listdir(folder)) == [SOCKET], "the private folder of the bind is gone"
    finally:
        proc.stop()
    assert not (folder / SOCKET).exists(), "the socket is removed at shutdown"
    proc = engine_in(folder, tmp_path, "--socket-mode", "0700", log_name="engine-2.log").start()
    try:
        assert mode_of(folder / SOCKET) == 0o700
    finally:
        proc.kill()
    # A stale socket of ours (the killed engine's) is replaced.
    assert stat.S_ISSOCK(os.lstat(folder / SOCKET).st_mode)
    proc = engine_in(folder, tmp_path, "--socket-mode", "0770", log_name="engine-3.log").start()
    try:
        assert mode_of(folder / SOCKET) == 0o770
    finally:
        proc.stop()


def test_a_bad_socket_mode_is_a_clear_message(folder: Path, tmp_path: Path) -> None:
    refused(engine_in(folder, tmp_path, "--socket-mode", "rwx"), "--socket-mode", "not an octal mode")


def test_what_is_not_a_stale_socket_of_ours_is_left_alone(folder: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    victim.chmod(0o600)
    (folder / SOCKET).symlink_to(victim)
    refused(engine_in(folder, tmp_path), "is not a socket of this user", "left alone")
    assert (folder / SOCKET).is_symlink() and mode_of(victim) == 0o600
    (folder / SOCKET).unlink()
    (folder / SOCKET).write_text("a file")
    refused(engine_in(folder, tmp_path, log_name="engine-2.log"), "is not a socket of this user")
    assert (folder / SOCKET).read_text() == "a file"


def test_a_folder_others_may_write_without_the_sticky_bit_is_refused(folder: Path, tmp_path: Path) -> None:
    folder.chmod(0o777)
    refused(engine_in(folder, tmp_path), "no sticky bit", "--allow-foreign-socket-folder")
    folder.chmod(0o1777)  # as /tmp: others may not rename or remove our entries
    proc = engine_in(folder, tmp_path, log_name="engine-2.log").start()
    proc.stop()
    folder.chmod(0o777)
    proc = engine_in(folder, tmp_path, "--allow-foreign-socket-folder", "true", log_name="engine-3.log")
    proc.start().stop()


def test_a_folder_of_another_user_is_refused_unless_allowed(
    folder: Path, tmp_path: Path, hostile: pwd.struct_passwd
) -> None:
    os.chown(folder, hostile.pw_uid, hostile.pw_gid)
    folder.chmod(0o755)
    refused(engine_in(folder, tmp_path), f"owned by user {hostile.pw_uid}", "--allow-foreign-socket-folder")
    env = {"DAPR_WORKFLOWS_ALLOW_FOREIGN_SOCKET_FOLDER": "true"}
    proc = EngineProcess(tmp_path, "--socket-folder", str(folder), env=env, log_name="engine-2.log")
    proc.start().stop()


# The other user's part: whenever a socket appears in the folder, it is swapped for a symlink to
# the victim file (as fast as it can, so as to land between any two steps of the engine).
SWAPPER = """
import os, stat, sys
folder, name, victim, ready = sys.argv[1:]
open(ready, "w").close()
swaps = 0
while swaps < 50:
    try:
        st = os.lstat(os.path.join(folder, name))
    except FileNotFoundError:
        continue
    if stat.S_ISSOCK(st.st_mode):
        os.rename(os.path.join(folder, name), os.path.join(folder, "moved-%d" % swaps))
        os.symlink(victim, os.path.join(folder, name))
        swaps += 1
"""


def test_a_hostile_folder_cannot_make_the_engine_chmod_another_file(
    folder: Path, tmp_path: Path, hostile: pwd.struct_passwd
) -> None:
    os.chown(folder, hostile.pw_uid, hostile.pw_gid)
    folder.chmod(0o755)
    victim_dir = Path(tempfile.mkdtemp(prefix="dw-victim-"))
    victim = victim_dir / "secret"
    victim.write_text("root's")
    victim.chmod(0o600)
    victim_dir.chmod(0o755)
    ready = folder / "swapper-ready"
    # The test's own interpreter may sit where the other user cannot reach it.
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that another user may run")
    swapper = subprocess.Popen(
        [python, "-c", SWAPPER, str(folder), SOCKET, str(victim), str(ready)],
        user=hostile.pw_uid,
        group=hostile.pw_gid,
        cwd="/",
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and swapper.poll() is None, "the swapper did not start"
            time.sleep(0.01)
        for attempt in range(3):
            proc = EngineProcess(
                tmp_path,
                "--socket-folder",
                str(folder),
                "--allow-foreign-socket-folder",
                "true",
                log_name=f"engine-{attempt}.log",
            )
            try:
                proc.start()
            except RuntimeError:
                pass  # refusing to start is fine; touching the victim is not
            finally:
                proc.kill()
            assert mode_of(victim) == 0o600, "the engine changed the mode of a file it was pointed at"
            assert victim.read_text() == "root's"
        assert any(p.name.startswith("moved-") for p in folder.iterdir()), "the swapper never swapped"
    finally:
        swapper.kill()
        swapper.wait()
        shutil.rmtree(victim_dir, ignore_errors=True)
