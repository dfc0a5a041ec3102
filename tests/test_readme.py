"""README.md stays true: its configuration table against the CLI's parser, its links and paths, and
its two commands, the first of which runs from a fresh clone with the Quickstart against its engine
(`scripts/try-as-new-user`), each step printing what the README's output blocks show.

The quickstart's `dapr run`, curl and client commands also run in `tests/test_samples.py`.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from dapr_workflows_component.cli import build_parser
from dapr_workflows_component.pluggable.server import SOCKET_FOLDER_VARIABLES
from dapr_workflows_component.security import APP_TOKEN_VARIABLE, DAPR_TOKEN_VARIABLE

from tests.harness.engine_process import free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TRY_AS_NEW_USER = REPO / "scripts" / "try-as-new-user"

# ------------------------------------------------------------------------------ reading the README


def readme_text() -> str:
    return README.read_text()


def readme_section(title: str, text: str | None = None) -> str:
    """The body of the `## title` section, up to the next `## ` heading."""
    text = readme_text() if text is None else text
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def readme_block(name: str) -> str:
    """The shell block after `<!-- tested: NAME -->`: commands the tests run as written."""
    match = re.search(rf"^<!-- tested: {re.escape(name)} -->\n```sh\n(.*?)^```", readme_text(), re.M | re.S)
    assert match, f"README.md has no shell block marked <!-- tested: {name} -->"
    return match.group(1)


def serve_options() -> dict[str, tuple[str, str]]:
    """Every `dapr-workflows serve` flag -> (its environment variable, its default), from the parser.

    The variable and the default are those the parser's help states, `(env NAME; default: 'X')`,
    which shows the built-in default whatever the environment of this test sets.
    """
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    options = {}
    for action in serve._actions:
        flags = [f for f in action.option_strings if f.startswith("--") and f != "--help"]
        if not flags:
            continue
        match = re.search(r"\(env (\w+); default: '(.*)'\)$", action.help or "", re.S)
        assert match, f"the help of {flags[0]} does not end with (env NAME; default: '...')"
        options[flags[0]] = (match.group(1), match.group(2).replace("\n", ""))
    return options


def serve_environment_variables() -> set[str]:
    """Every variable `dapr-workflows serve` reads: one per flag, daprd's socket folder variables and
    Dapr's token variables."""
    tokens = {DAPR_TOKEN_VARIABLE, APP_TOKEN_VARIABLE}
    return {env for env, _ in serve_options().values()} | set(SOCKET_FOLDER_VARIABLES) | tokens


def configuration_rows() -> dict[str, list[str]]:
    """The rows of the README's flag table: flag -> its cells."""
    rows = {}
    for line in readme_section("Configuration").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `--") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    return rows


def load_try_as_new_user() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("try_as_new_user", str(TRY_AS_NEW_USER))
    spec = importlib.util.spec_from_loader("try_as_new_user", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ configuration


def test_every_flag_of_serve_has_a_row_with_its_variable_and_default() -> None:
    options = serve_options()
    rows = configuration_rows()
    missing = sorted(set(options) - set(rows))
    assert not missing, f"README.md's Configuration table lacks these flags of cli.py: {missing}"
    for flag, (env, default) in options.items():
        cells = rows[flag]
        assert cells[1] == f"`{env}`", f"{flag}: the README says {cells[1]}, the CLI reads {env}"
        if default:
            assert cells[2] == f"`{default}`", f"{flag}: the README's default {cells[2]}, the CLI's {default}"
        assert cells[3], f"{flag}: the README does not say what it does"


def test_the_configuration_table_names_no_flag_the_cli_lacks() -> None:
    stale = sorted(set(configuration_rows()) - set(serve_options()))
    assert not stale, f"README.md's Configuration table has flags cli.py does not know: {stale}"


def test_every_variable_named_in_the_readme_is_read_by_someone() -> None:
    """A DAPR_WORKFLOWS_* name in the README is a variable of serve, of the client commands or of the
    SDK extension."""
    from dapr_workflows_component.cli_client import ADDRESS_ENV, TOKEN_ENVS
    from dapr_workflows_ext.worker import ENGINE_ADDRESS_VARIABLE

    known = serve_environment_variables() | {ENGINE_ADDRESS_VARIABLE, ADDRESS_ENV, *TOKEN_ENVS}
    named = set(re.findall(r"\bDAPR_WORKFLOWS_[A-Z_]+\b", readme_text()))
    assert named - known == set()


# ------------------------------------------------------------------------------ links and paths


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_in_page_links_lead_to_headings() -> None:
    text = readme_text()
    anchors = {_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links, "the README links to none of its sections"
    assert links - anchors == set(), f"links to missing headings; the headings are {sorted(anchors)}"


def test_repository_paths_the_readme_names_exist() -> None:
    tops = ("samples/", "deploy/", "scripts/", "components/", "tests/", "benchmarks/", "docs/")
    text = readme_text()
    candidates = re.findall(r"`([\w./-]+)`", text) + re.findall(r"\s((?:samples|deploy)/[\w./-]+)", text)
    named = {p.rstrip("/.,") for p in candidates if p.startswith(tops) and "*" not in p}
    assert "samples/order_processing" in named
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_the_sections_other_parts_fill_in_are_there() -> None:
    assert "docs/postgresql.md" in readme_section("Choosing PostgreSQL")
    assert "docs/triggers.md" in readme_section("Triggers")
    assert "docs/concurrency-limits.md" in readme_section("Concurrency limits")


# ------------------------------------------------------------------------------ the two commands


def test_the_two_commands_are_the_engine_and_the_tests() -> None:
    commands = load_try_as_new_user().readme_commands(README)
    assert len(commands) == 2, commands
    first, second = commands
    assert "pip install ." in first and first.endswith("dapr-workflows serve"), first
    assert second == "bash scripts/test"
    # The second command is what CI runs on a fresh clone.
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.timeout(1500)
def test_the_first_command_and_the_quickstart_run_from_a_fresh_clone(dapr_bin: Path) -> None:
    """`scripts/try-as-new-user --first-only`: clone, the README's first command, ready, then the
    Quickstart's steps 2 to 4 against that engine, each printing what the README shows, no daprd
    error line and no daprd left; then the engine is stopped.

    The clone includes the working tree's uncommitted changes (`--worktree`), so this checks the
    README as it is now. The engine gets free ports and its own socket folder (through its
    DAPR_WORKFLOWS_* variables, not by changing the command), in case one runs on the default ones,
    and the worker's daprd a free port instead of 3500. `dapr_bin`: the pinned Dapr is built, so
    the Quickstart's `scripts/install-dapr` finds it in its cache.
    """
    with tempfile.TemporaryDirectory(prefix="dw-newcomer-sock-") as sockets:
        env = {
            **os.environ,
            "DAPR_WORKFLOWS_ENGINE_ADDRESS": f"127.0.0.1:{free_port()}",
            "DAPR_WORKFLOWS_DURABLETASK_ADDRESS": f"127.0.0.1:{free_port()}",
            "DAPR_WORKFLOWS_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
            "DAPR_WORKFLOWS_SOCKET_FOLDER": sockets,
        }
        env.pop("DAPR_WORKFLOWS_STORE", None)
        command = [sys.executable, str(TRY_AS_NEW_USER), "--first-only", "--worktree", "--timeout", "600"]
        proc = subprocess.run(
            [*command, "--daprd-http-port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=1400,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "dapr-workflows serve: ready" in output
    for step in (2, 3, 4):
        assert f"quickstart step {step}: printed what the README shows" in output, output[-6000:]
    assert "try-as-new-user: no daprd error lines" in output
    assert "the quickstart passed" in output
    assert "the first command ended with exit code 0" in output
    # The engine used the README's default store, a file in the clone.
    assert re.search(r"store: SQLite /\S*/dapr-workflows/dapr-workflows\.db", output), output[-3000:]


@pytest.mark.parametrize("variable", ["VIRTUAL_ENV", "PYTHONPATH"])
def test_the_newcomer_environment_has_no_active_virtual_environment(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv(variable, "/somewhere")
    monkeypatch.setenv("PATH", os.pathsep.join([venv_bin, "/usr/bin"]))
    env = load_try_as_new_user().newcomer_environment()
    assert variable not in env
    if (Path(venv_bin).parent / "pyvenv.cfg").is_file():
        assert venv_bin not in env["PATH"].split(os.pathsep)
    assert "/usr/bin" in env["PATH"].split(os.pathsep)


# ------------------------------------------------------------------------------ output blocks


def test_an_output_block_matches_lines_in_order_per_app_with_ellipses() -> None:
    missing_lines = load_try_as_new_user().missing_lines
    expected = "== APP - a == one ...\n...\n== APP - b == two\ndone: ...\n== APP - a == three"
    actual = "== APP - b == two\n== APP - a == one 1\n== APP - a == three\nnoise\ndone: yes\n"
    assert missing_lines(expected, actual) == []
    # Out of order within one app, a line that is not there, text where the block has none.
    assert missing_lines(expected, actual.replace("three", "3")) == ["== APP - a == three"]
    assert missing_lines("== APP - a == three\n== APP - a == one ...", actual) == ["== APP - a == one ..."]
    assert missing_lines("done: yes", "done: yes, but") == ["done: yes"]


def test_every_output_block_follows_a_tested_block() -> None:
    """The quickstart's output blocks exist, each after the commands it shows the output of."""
    text = readme_text()
    names = re.findall(r"^<!-- output: ([\w-]+) -->$", text, re.M)
    assert names == ["quickstart-run", "quickstart-curl", "quickstart-client"]
    for name in names:
        assert text.index(f"<!-- tested: {name} -->") < text.index(f"<!-- output: {name} -->")


# ------------------------------------------------------------------------------ skips


def test_the_test_command_shows_why_each_skip_is_skipped(tmp_path: Path) -> None:
    """scripts/test runs pytest with `-rs`: a deliberate skip of the suite is listed with its reason."""
    line = next(ln for ln in (REPO / "scripts" / "test").read_text().splitlines() if "-m pytest" in ln)
    options = line.split("-m pytest", 1)[1].replace('"$@"', "").split()
    assert "-rs" in options, line
    skipped = (
        "tests/test_workflow_semantics.py::"
        "test_patches_keep_old_instances_on_the_old_path_and_new_ones_on_the_new[durabletask-sqlite]"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *options,
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            skipped,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"^SKIPPED \[1\] .*durabletask 1\.12 has no workflow patching API", proc.stdout, re.M), (
        proc.stdout[-3000:]
    )
    # The README says what the deliberate skips are.
    two_commands = " ".join(readme_section("The two commands").split())
    for feature in (
        "is_patched",
        "rerun_workflow_from_event",
        "ListInstanceIDs",
        "reuse policy",
        "RestartInstance",
        "skipped for SQLite",
        "`mount`",
    ):
        assert feature in two_commands, feature
