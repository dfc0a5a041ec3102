"""`dapr run -f samples/multi_app` with the real dapr CLI and daprd against one real engine: the
client prints COMPLETED and the result, and exits 0.

As in tests/test_samples.py: the sample and `components/` are copied into a folder of their own,
the engine listens on free ports (the apps find it through $DAPR_WORKFLOWS_ENGINE_ADDRESS), and
everything the dapr CLI starts is one process group, ended at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.engine_process import EngineProcess
from tests.test_samples import end_process_group

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path("samples") / "multi_app"
CLIENT_PREFIX = "== APP - multi-app-client == "


def test_dapr_run_f_multi_app_completes(dapr_bin: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO / SAMPLE, tmp_path / SAMPLE, ignore=shutil.ignore_patterns(".dapr", "__pycache__"))
    shutil.copytree(REPO / "components", tmp_path / "components")
    engine = EngineProcess(tmp_path).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "VIRTUAL_ENV", "APP_ID"))}
    env.update(
        DAPR_RUNTIME_PATH=str(dapr_bin.parent),
        PATH=os.pathsep.join([str(dapr_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        DAPR_COMPONENTS_SOCKETS_FOLDER=str(engine.socket_folder),
        DAPR_WORKFLOWS_ENGINE_ADDRESS=engine.dapr_address,
    )
    log_path = tmp_path / "dapr-run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec dapr run -f {SAMPLE}"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            output = log_path.read_text(errors="replace")
            if re.search(rf"^{re.escape(CLIENT_PREFIX)}result: ", output, re.M):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no result from the client:\n{output[-6000:]}\n{engine.log_text()[-3000:]}")
            time.sleep(0.3)
        lines = [ln[len(CLIENT_PREFIX) :] for ln in output.splitlines() if ln.startswith(CLIENT_PREFIX)]
        assert "status: COMPLETED" in lines, output[-6000:]
        result = json.loads(next(ln for ln in lines if ln.startswith("result: "))[len("result: ") :])
        assert result == {
            "order": "paperclips",
            "quote": {"total": 10.0, "priced_by": "pricing"},
            "shipment": {"parcel": "200 x paperclips packed by shipping"},
        }
        # The client exits 0 (the dapr CLI reports an exit code otherwise).
        deadline = time.monotonic() + 30
        while "Exited App successfully" not in output or "exited with error code" in output:
            assert "exited with error code" not in output, output[-6000:]
            assert time.monotonic() < deadline, output[-6000:]
            time.sleep(0.3)
            output = log_path.read_text(errors="replace")
        text = engine.log_text()
        for app_id in ("orchestrator", "pricing", "shipping"):
            assert f"serves app {app_id!r}" in text, text[-3000:]
    finally:
        end_process_group(proc)
        engine.kill()
