"""Schema versions of the label store, and the steps that take a database from one to the next.

A database records every applied step in `schema_version`. Opening a store runs the missing
steps in order inside one transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock),
so that two processes opening the same new database at once do not race. A fresh database is
built by the same steps as an old one is upgraded by, so the two cannot drift apart; each step
is frozen once released. A database newer than this release is refused, not guessed at.

To change the schema: change `ui.models`, then append a step here that takes version N to N+1.
"""

from __future__ import annotations

import time

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine

from alignment.errors import UserError


def _v1_base(conn: Connection) -> None:
    """The first released schema: users, campaigns, prompts, candidates, items, assignments,
    judgments and the append-only audit log."""
    md = MetaData()
    Table("schema_version", md,
          Column("version", Integer, primary_key=True, autoincrement=False),
          Column("applied_at", Float, nullable=False),
          Column("description", String(200), nullable=False))
    Table("users", md,
          Column("id", Integer, primary_key=True),
          Column("name", String(200), nullable=False, unique=True),
          Column("password_hash", String(400)),
          Column("role", String(16), nullable=False),
          Column("simulated", Boolean, nullable=False),
          Column("created_at", Float, nullable=False))
    Table("campaigns", md,
          Column("id", Integer, primary_key=True),
          Column("name", String(200), nullable=False, unique=True),
          Column("mode", String(16), nullable=False),
          Column("overlap", Integer, nullable=False),
          Column("guidelines", Text, nullable=False),
          Column("assignment_ttl_s", Float, nullable=False),
          Column("seed", Integer, nullable=False),
          Column("created_at", Float, nullable=False),
          Column("created_by", Integer, ForeignKey("users.id")))
    Table("prompts", md,
          Column("id", Integer, primary_key=True),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
          Column("prompt_json", Text, nullable=False),
          Column("metadata_json", Text, nullable=False))
    Table("candidates", md,
          Column("id", Integer, primary_key=True),
          Column("prompt_id", Integer, ForeignKey("prompts.id"), nullable=False, index=True),
          Column("idx", Integer, nullable=False),
          Column("text", Text, nullable=False),
          Column("policy", String(400)),
          Column("checkpoint", String(400)),
          Column("metadata_json", Text, nullable=False))
    Table("items", md,
          Column("id", Integer, primary_key=True),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
          Column("prompt_id", Integer, ForeignKey("prompts.id"), nullable=False),
          Column("candidate_ids_json", Text, nullable=False),
          Column("ordinal", Integer, nullable=False),
          Column("is_gold", Boolean, nullable=False),
          Column("gold_json", Text),
          Index("ix_items_campaign_ordinal", "campaign_id", "ordinal"))
    Table("assignments", md,
          Column("id", Integer, primary_key=True),
          Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
          Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
          Column("status", String(16), nullable=False),
          Column("shown_order_json", Text, nullable=False),
          Column("token", String(64), nullable=False),
          Column("created_at", Float, nullable=False),
          Column("activated_at", Float, nullable=False),
          Column("expires_at", Float, nullable=False),
          Column("finished_at", Float),
          Column("skip_reason", Text),
          UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),
          Index("ix_assignments_item_status", "item_id", "status"),
          Index("ix_assignments_user_campaign", "user_id", "campaign_id", "status"))
    Table("judgments", md,
          Column("id", Integer, primary_key=True),
          Column("assignment_id", Integer, ForeignKey("assignments.id"), nullable=False),
          Column("item_id", Integer, ForeignKey("items.id"), nullable=False, index=True),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
          Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
          Column("shown_order_json", Text, nullable=False),
          Column("choice", String(16)),
          Column("winner_id", Integer),
          Column("loser_id", Integer),
          Column("ranking_json", Text),
          Column("ranking_shown", String(200)),
          Column("rationale", Text, nullable=False),
          Column("time_spent_s", Float),
          Column("client_token", String(64), unique=True),
          Column("created_at", Float, nullable=False),
          Column("retracted_at", Float))
    Table("audit_log", md,
          Column("id", Integer, primary_key=True),
          Column("at", Float, nullable=False),
          Column("user_id", Integer),
          Column("action", String(64), nullable=False),
          Column("campaign_id", Integer),
          Column("detail_json", Text, nullable=False))
    md.create_all(conn)
    # The audit log is append-only at the database level, not just by convention.
    if conn.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def _v2_user_active_campaign_status(conn: Connection) -> None:
    """Users can be deactivated (kept for their judgments, refused at login) and campaigns
    closed (no more assignments)."""
    true = "1" if conn.dialect.name == "sqlite" else "TRUE"
    conn.exec_driver_sql(f"ALTER TABLE users ADD COLUMN active BOOLEAN NOT NULL DEFAULT {true}")
    conn.exec_driver_sql("ALTER TABLE campaigns ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'open'")


def _v3_sessions(conn: Connection) -> None:
    """Sign-in sessions in the database (they survive restarts and span app processes)."""
    md = MetaData()
    Table("users", md, Column("id", Integer, primary_key=True))
    Table("sessions", md,
          Column("id", Integer, primary_key=True),
          Column("token_sha256", String(64), nullable=False, unique=True),
          Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
          Column("created_at", Float, nullable=False),
          Column("expires_at", Float, nullable=False),
          Column("revoked_at", Float))
    md.tables["sessions"].create(conn)


def _v4_items_filled(conn: Connection) -> None:
    """`items.filled`: the next item is found by walking the open items in serving order, so
    a request costs the same at the end of a big campaign as at its start (before, it walked
    every item judged so far, counting each one's assignments)."""
    false = "0" if conn.dialect.name == "sqlite" else "FALSE"
    conn.exec_driver_sql(f"ALTER TABLE items ADD COLUMN filled BOOLEAN NOT NULL DEFAULT {false}")
    conn.exec_driver_sql(
        "UPDATE items SET filled = (NOT items.is_gold AND (SELECT count(*) FROM assignments a "
        "WHERE a.item_id = items.id AND a.status = 'done') >= "
        "(SELECT c.overlap FROM campaigns c WHERE c.id = items.campaign_id))"
    )
    conn.exec_driver_sql("CREATE INDEX ix_items_campaign_filled_ordinal ON items (campaign_id, filled, ordinal)")


def _v5_lead_tools(conn: Connection) -> None:
    """What a campaign lead acts with: adjudications (final labels, kept apart from votes),
    items sent back for more labels (`items.extra_overlap`), campaigns restricted to named
    labelers, and a gold-accuracy threshold below which a labeler is paused."""
    conn.exec_driver_sql("ALTER TABLE items ADD COLUMN extra_overlap INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql("ALTER TABLE campaigns ADD COLUMN min_gold_accuracy FLOAT")
    md = MetaData()
    Table("users", md, Column("id", Integer, primary_key=True))
    Table("campaigns", md, Column("id", Integer, primary_key=True))
    Table("items", md, Column("id", Integer, primary_key=True))
    Table("adjudications", md,
          Column("id", Integer, primary_key=True),
          Column("item_id", Integer, ForeignKey("items.id"), nullable=False, index=True),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
          Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
          Column("label", String(16)),
          Column("winner_id", Integer),
          Column("loser_id", Integer),
          Column("ranking_json", Text),
          Column("rationale", Text, nullable=False),
          Column("created_at", Float, nullable=False),
          Column("superseded_at", Float))
    Table("campaign_labelers", md,
          Column("id", Integer, primary_key=True),
          Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
          Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
          UniqueConstraint("campaign_id", "user_id", name="uq_campaign_labeler"))
    md.tables["adjudications"].create(conn)
    md.tables["campaign_labelers"].create(conn)


def _v6_user_kinds(conn: Connection) -> None:
    """AI annotators: `users.kind` ('human', 'simulated' or 'ai'; existing simulated users
    become 'simulated'), `users.profile_json` (an AI judge's model, prompt and principles) and
    `judgments.confidence` (how sure an AI judge was)."""
    conn.exec_driver_sql("ALTER TABLE users ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'human'")
    true = "1" if conn.dialect.name == "sqlite" else "TRUE"
    conn.exec_driver_sql(f"UPDATE users SET kind = 'simulated' WHERE simulated = {true}")
    conn.exec_driver_sql("ALTER TABLE users ADD COLUMN profile_json TEXT")
    conn.exec_driver_sql("ALTER TABLE judgments ADD COLUMN confidence FLOAT")


# (version, description, step). Append only; never edit a released step.
STEPS = [
    (1, "base schema", _v1_base),
    (2, "users.active, campaigns.status", _v2_user_active_campaign_status),
    (3, "sessions", _v3_sessions),
    (4, "items.filled", _v4_items_filled),
    (5, "adjudications, items.extra_overlap, campaign_labelers, campaigns.min_gold_accuracy", _v5_lead_tools),
    (6, "users.kind, users.profile_json, judgments.confidence", _v6_user_kinds),
]
LATEST = STEPS[-1][0]


def current_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if "schema_version" not in tables:
        if tables & {"users", "campaigns", "judgments"}:
            raise UserError("database has label-store-like tables but no schema_version table: not a label store")
        return 0
    return int(conn.exec_driver_sql("SELECT COALESCE(MAX(version), 0) FROM schema_version").scalar())


def migrate(engine: Engine, target: int | None = None) -> int:
    """Bring the database to `target` (default: the latest version); returns the version."""
    target = LATEST if target is None else target
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(741741)"))
        version = current_version(conn)
        if version > LATEST:
            raise UserError(
                f"label store {engine.url.render_as_string(hide_password=True)} has schema v{version}, "
                f"newer than this release (v{LATEST}): upgrade rlhf-toolkit"
            )
        for step_version, description, step in STEPS:
            if version < step_version <= target:
                step(conn)
                conn.execute(
                    text("INSERT INTO schema_version (version, applied_at, description) VALUES (:v, :t, :d)"),
                    {"v": step_version, "t": time.time(), "d": description},
                )
                version = step_version
    return version
