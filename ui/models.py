"""The label store's tables, as SQLAlchemy 2 ORM models (the latest schema version).

Times are unix seconds (floats) so that the service can run on an injected clock in tests.
JSON-shaped values (prompts, metadata, orders) are stored as JSON text: the store must work
unchanged on SQLite and PostgreSQL. `ui.migrations` builds these tables step by step; a test
checks that a migrated database and this module agree column for column.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    """One row per applied migration; the highest `version` is the database's version."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    applied_at: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # "scrypt$n$r$p$salt$hash" (ui.passwords); NULL for simulated annotators, who cannot log in.
    password_hash: Mapped[Optional[str]] = mapped_column(String(400), nullable=True)
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "labeler"
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # v2
    # v6: "human", "simulated" (a persona scored by the gold checker) or "ai" (a model judge).
    # `simulated` stays true for every kind but "human": none of them has a password.
    kind: Mapped[str] = mapped_column(String(16), default="human")
    # v6: what an AI annotator is (judge model, prompt template, principles), as JSON.
    profile_json: Mapped[Optional[str]] = mapped_column(Text, nullable=True)


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    mode: Mapped[str] = mapped_column(String(16))  # "pairwise" | "ranking"
    overlap: Mapped[int] = mapped_column(Integer)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    assignment_ttl_s: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # v2: "open" | "closed"
    # v5: a labeler whose gold accuracy in this campaign falls below this (after
    # GOLD_PAUSE_MIN_ANSWERS gold answers) gets no new items: paused until the admin acts.
    min_gold_accuracy: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    prompt_json: Mapped[str] = mapped_column(Text)  # a string or a list of chat messages
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")


class Candidate(Base):
    """A candidate response to a prompt, with the policy and checkpoint that produced it."""

    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)  # position in the imported row's `responses`
    text: Mapped[str] = mapped_column(Text)
    policy: Mapped[Optional[str]] = mapped_column(String(400), nullable=True)
    checkpoint: Mapped[Optional[str]] = mapped_column(String(400), nullable=True)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")


class Item(Base):
    """One unit of work: a pair (pairwise) or all K candidates (ranking) of one prompt."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    candidate_ids_json: Mapped[str] = mapped_column(Text)  # canonical (import) order
    ordinal: Mapped[int] = mapped_column(Integer)  # serving order
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    # expected answer in candidate ids: {"winner": id} | {"label": "tie"|"both_bad"} | {"ranking": [ids]}
    gold_json: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    # v4: every overlap slot holds a judgment (never for gold items). Kept by submit and undo,
    # so that serving the next item walks only the open ones instead of every item judged so far.
    filled: Mapped[bool] = mapped_column(Boolean, default=False)
    # v5: labels asked for beyond the campaign's overlap ("send back for more labels").
    extra_overlap: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_items_campaign_ordinal", "campaign_id", "ordinal"),
        Index("ix_items_campaign_filled_ordinal", "campaign_id", "filled", "ordinal"),
    )


class Assignment(Base):
    """An item handed to one labeler. `active` until judged (`done`), `skipped` or `expired`.

    An active assignment past `expires_at` no longer holds its slot: another labeler may get
    the item. The unique (item, user) pair is what keeps an item from reaching a labeler twice.
    """

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))
    shown_order_json: Mapped[str] = mapped_column(Text)  # candidate ids in the order shown (A, B, ...)
    token: Mapped[str] = mapped_column(String(64))  # client token offered for this showing
    created_at: Mapped[float] = mapped_column(Float)
    activated_at: Mapped[float] = mapped_column(Float)  # last (re)activation: undo, expiry refresh
    expires_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    skip_reason: Mapped[Optional[str]] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),
        Index("ix_assignments_item_status", "item_id", "status"),
        Index("ix_assignments_user_campaign", "user_id", "campaign_id", "status"),
    )


class Judgment(Base):
    """One labeler's answer to one assignment. Undo sets `retracted_at`; rows are never deleted."""

    __tablename__ = "judgments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    shown_order_json: Mapped[str] = mapped_column(Text)  # candidate ids as shown: A, B, ...
    choice: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)  # A | B | tie | both_bad
    winner_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # pairwise A/B only
    loser_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    ranking_json: Mapped[Optional[str]] = mapped_column(Text, nullable=True)  # candidate ids, best first
    ranking_shown: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)  # e.g. "C>A>B"
    rationale: Mapped[str] = mapped_column(Text, default="")
    time_spent_s: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    client_token: Mapped[Optional[str]] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    retracted_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    confidence: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # v6: an AI judge's, in [0, 1]


class Adjudication(Base):
    """A lead's final label for an item (v5): its own kind of judgment, kept apart from the
    labelers' votes so that agreement and gold accuracy never count it, and preferred over
    the votes by the export's majority aggregation. A newer adjudication of the same item
    sets `superseded_at` on the older one; rows are never deleted."""

    __tablename__ = "adjudications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    label: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)  # "preference" | "tie" | "both_bad"
    winner_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # pairwise preference
    loser_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    ranking_json: Mapped[Optional[str]] = mapped_column(Text, nullable=True)  # candidate ids, best first
    rationale: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    superseded_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class CampaignLabeler(Base):
    """The named labelers a campaign is restricted to (v5); a campaign without rows here is
    open to every labeler."""

    __tablename__ = "campaign_labelers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (UniqueConstraint("campaign_id", "user_id", name="uq_campaign_labeler"),)


class LoginSession(Base):
    """A signed-in browser or API client (v3). Only the token's SHA-256 is stored, so a copy
    of the database does not let anyone sign in. Sessions live in the database, not in the
    server process, so they survive a restart and work across several app processes."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class AuditLog(Base):
    """Append-only: database triggers refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    user_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    detail_json: Mapped[str] = mapped_column(Text, default="{}")
