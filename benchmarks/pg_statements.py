"""`python -m benchmarks.pg_statements`: the SQL statements and transactions one workflow costs on PostgreSQL.

Starts a PostgreSQL server for the run with `log_statement = all` on the engine's database, one
engine on it and one durabletask driver (`benchmarks.driver`), runs a warm-up batch and then a
batch of N workflows of a shape, and counts the statements the server logged during that batch:
per workflow, by kind (the first words of each statement), with the transactions (BEGIN) split
into writes and read-only snapshots, and the round trips the engine waited for (counted by a relay
between the engine and the server, `pg_round_trips.py`). The server's own CPU and the engine's are printed per
workflow too. Under load the counts stay exact; the CPU figures do not.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg

from tests.harness.postgres import PostgresServer

from .backends import DriverProcess, EngineProcess
from .daprd_backend import tree_cpu_seconds
from .pg_round_trips import RoundTripRelay

_LOGGED = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)$")
_NORMALISE = re.compile(r"\s+")


def kind(statement: str) -> str:
    """A short name for a statement: its first words, with the table it works on."""
    text = _NORMALISE.sub(" ", statement.strip())
    upper = text.upper()
    if upper.startswith("BEGIN"):
        return "BEGIN (read only)" if "READ ONLY" in upper else "BEGIN"
    if upper.startswith(("COMMIT", "ROLLBACK", "LISTEN")):
        return upper.split()[0]
    if upper.startswith("WITH"):
        match = re.search(r"\)\s*(UPDATE|DELETE FROM|INSERT INTO|SELECT)\s+(\S+)", text, re.I)
        return f"WITH ... {match.group(1).upper()} {match.group(2)}" if match else text[:40]
    for verb in ("UPDATE", "DELETE FROM", "INSERT INTO"):
        if upper.startswith(verb):
            return f"{verb} {text[len(verb) :].split()[0]}"
    if upper.startswith("SELECT"):
        match = re.search(r"\bFROM\s+(\S+)", text, re.I)
        lock = " FOR UPDATE" if "FOR UPDATE" in upper else ""
        return f"SELECT {text[7:].split()[0][:24]} FROM {match.group(1) if match else '?'}{lock}"
    return text[:40]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_statements", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="workflows in the counted batch (100)")
    # The names only: importing durabletask's SDK here would keep Dapr's out of a test process.
    parser.add_argument("--shape", default="single", choices=("single", "chain", "fanout"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dapr-workflows-pg-statements-"))
    server = PostgresServer(durable=True).start()
    engine: EngineProcess | None = None
    driver: DriverProcess | None = None
    relay: RoundTripRelay | None = None
    try:
        url = server.create_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET log_statement = 'all'")
        relay = RoundTripRelay(url)
        engine = EngineProcess(workdir, store_url=relay.url)
        engine.start()
        driver = DriverProcess(["--address", engine.address], workdir / "driver.log")
        driver.start()
        driver.batch(args.shape, 10)
        time.sleep(1)  # the warm-up's last statements are logged before the mark
        assert server._proc is not None
        mark = server.log_path.stat().st_size
        cpu0, engine0 = tree_cpu_seconds(server._proc.pid), engine.cpu_seconds()
        trips0 = relay.round_trips
        driver.batch(args.shape, args.n)
        cpu1, engine1 = tree_cpu_seconds(server._proc.pid), engine.cpu_seconds()
        trips = relay.round_trips - trips0
        time.sleep(1)
        with open(server.log_path, errors="replace") as log:
            log.seek(mark)
            lines = log.read().splitlines()
    finally:
        if driver is not None:
            driver.stop()
        if engine is not None:
            engine.stop()
        server.stop()
        if relay is not None:
            relay.close()
        shutil.rmtree(workdir, ignore_errors=True)
    counts = Counter(kind(m.group(1)) for line in lines if (m := _LOGGED.search(line)))
    total = sum(counts.values())
    writes, reads = counts["BEGIN"], counts["BEGIN (read only)"]
    print(
        f"{args.shape}, N={args.n}: per workflow {total / args.n:.1f} statements in "
        f"{(writes + reads) / args.n:.1f} transactions ({writes / args.n:.1f} writes, "
        f"{reads / args.n:.1f} read only), {trips / args.n:.1f} round trips; CPU ms/wf: "
        f"PostgreSQL {(cpu1 - cpu0) * 1000 / args.n:.2f}, engine {(engine1 - engine0) * 1000 / args.n:.2f}"
    )
    for name, count in counts.most_common():
        print(f"{count / args.n:>7.2f}  {name}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
