"""The PostgreSQL store's schema: its migrations, numbered, applied in order above the current one."""

from __future__ import annotations

from .entity_sql import entity_tables
from .postgres_concurrency import CONCURRENCY_MIGRATION
from .sql import MANAGEMENT_INDEXES

SCHEMA_VERSION = 7

# instance_id is compared byte by byte (COLLATE "C"), as in SQLite: listing pages by ID then match
# the SQLite store's order, and the primary key's index also serves prefix searches.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE instances (
            instance_id TEXT COLLATE "C" PRIMARY KEY,
            dialect TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT,
            status INTEGER NOT NULL,
            execution_id TEXT NOT NULL,
            input TEXT,
            output TEXT,
            custom_status TEXT,
            failure BYTEA,
            parent_instance_id TEXT COLLATE "C",
            parent_task_id BIGINT,
            parent_execution_id TEXT,
            tags TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            completed_at BIGINT,
            scheduled_start_at BIGINT,
            rerun TEXT
        )
        """,
        "CREATE INDEX instances_parent ON instances (parent_instance_id)",
        "CREATE INDEX instances_created ON instances (created_at)",
        """
        CREATE TABLE history (
            instance_id TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL,
            event BYTEA NOT NULL,
            PRIMARY KEY (instance_id, seq)
        )
        """,
        """
        CREATE TABLE inbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            instance_id TEXT COLLATE "C" NOT NULL,
            visible_at BIGINT NOT NULL,
            event BYTEA NOT NULL
        )
        """,
        "CREATE INDEX inbox_instance ON inbox (instance_id, id)",
        "CREATE INDEX inbox_visible ON inbox (visible_at)",
        """
        CREATE TABLE activities (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            instance_id TEXT COLLATE "C" NOT NULL,
            execution_id TEXT NOT NULL,
            dialect TEXT NOT NULL,
            task_id BIGINT NOT NULL,
            request BYTEA NOT NULL
        )
        """,
        "CREATE INDEX activities_instance ON activities (instance_id)",
    ),
    2: (
        """
        CREATE TABLE outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            created_at BIGINT NOT NULL,
            payload TEXT NOT NULL
        )
        """,
        "CREATE INDEX outbox_created ON outbox (created_at)",
    ),
    3: (
        "ALTER TABLE instances ADD COLUMN lease_token TEXT, ADD COLUMN lease_until BIGINT",
        "ALTER TABLE activities ADD COLUMN lease_token TEXT, ADD COLUMN lease_until BIGINT",
        # The activity scan filters on the lease alone; the instance scan starts from inbox_visible.
        "CREATE INDEX activities_lease ON activities (lease_until)",
        # An engine renews and releases its leases by token.
        "CREATE INDEX instances_lease_token ON instances (lease_token) WHERE lease_token IS NOT NULL",
        "CREATE INDEX activities_lease_token ON activities (lease_token) WHERE lease_token IS NOT NULL",
    ),
    # The management listing's filters and orders, and retention (management indexes).
    4: tuple(s.strip() for s in MANAGEMENT_INDEXES.split(";") if s.strip()),
    5: CONCURRENCY_MIGRATION,
    # Durable entities: state, locks, waiting critical sections.
    6: entity_tables("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", 'TEXT COLLATE "C"', "BIGINT"),
    # A history cached by an engine is used only while the instance's version is the one it was
    # read or written at: every history write sets a new random version (NULL, the value of the
    # rows that existed before, matches no cached version; a new row gets a fresh one).
    7: (
        "ALTER TABLE instances ADD COLUMN history_version UUID",
        "ALTER TABLE instances ALTER COLUMN history_version SET DEFAULT gen_random_uuid()",
    ),
}
