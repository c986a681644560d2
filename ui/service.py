"""The label store's one API: humans (through the app) and simulated annotators both write here.

    svc = LabelService.open("sqlite:///labels.db")           # or postgresql://...
    uid = svc.create_user("ann", "secret")                    # role="labeler"
    cid = svc.create_campaign("round1", items=rows, overlap=3)
    a = svc.next_assignment(uid, cid)                         # None when nothing is left for ann
    svc.submit_judgment(a.id, uid, choice="A", client_token=a.token)
    svc.export(cid, "labels.jsonl")

Assignment rules. Items are served in campaign order. An item is open to a labeler while
fewer than `overlap` labelers hold it, counting judged assignments and unexpired active ones;
an active assignment past its expiry frees its slot for someone else. The (item, labeler)
pair is unique, so nobody sees an item twice and a skipped item never comes back (unless the
labeler undoes the skip). Gold items have no overlap cap: every labeler meets each once. The
overlap is enforced again at submit time, so an expired assignment that was handed on cannot
push an item past its overlap. Every write is one transaction: BEGIN IMMEDIATE on SQLite,
row locks (SELECT ... FOR UPDATE SKIP LOCKED on items) on PostgreSQL. Submit and undo keep
`items.filled` (judged `overlap` times), so finding the next item walks only open items and
costs the same at the end of a large campaign as at its start.

Pairwise campaigns with K > 2 responses per prompt get one item per pair: all K(K-1)/2 pairs,
or `pairs_per_prompt` distinct pairs drawn at random (seeded by the campaign's seed).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import json
import random
import secrets
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import and_, create_engine, event, exists, false, func, or_, select, true
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from alignment.errors import UserError
from ui import agreement as quality
from ui import export as exporting
from ui import models as m
from ui import review
from ui.candidates import normalize_rows
from ui.migrations import migrate
from ui.passwords import hash_password, verify_password

CHOICES = ("A", "B", "tie", "both_bad")
# A gold threshold pauses a labeler only after this many gold answers: one unlucky item
# should not stop anyone.
GOLD_PAUSE_MIN_ANSWERS = 3
ROLES = ("labeler", "admin")
MODES = ("pairwise", "ranking")
# Who made a judgment: a person, a simulated persona (gold checker + noise), or an AI judge.
USER_KINDS = ("human", "simulated", "ai")


def position_label(i: int) -> str:
    """Shown position -> letter: 0 -> 'A', 1 -> 'B', ..."""
    return chr(ord("A") + i)


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    simulated: bool
    active: bool = True
    kind: str = "human"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass
class Assignment:
    """An item as one labeler sees it: responses in the shown, anonymised order."""

    id: int
    item_id: int
    campaign_id: int
    mode: str
    prompt: Any  # str or a list of chat messages
    responses: list[str]  # shown order: A, B, ...
    candidate_ids: list[int]  # candidate id of each shown response
    token: str  # pass back as client_token: a repeated submit then makes one judgment
    expires_at: float
    # The item's metadata (e.g. the suite's task spec, for simulated annotators' gold scores).
    # Never shown to labelers: the app and its API leave it out, since it may hold the answer.
    metadata: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.labels = [position_label(i) for i in range(len(self.responses))]

    @property
    def mapping(self) -> dict[str, int]:
        """Shown label -> candidate id."""
        return dict(zip(self.labels, self.candidate_ids))


class LabelService:
    """Users, campaigns, assignments, judgments, quality statistics and export."""

    def __init__(self, engine: Engine, reader: Engine | None = None, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.reader = reader or engine
        self.clock = clock
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, db_url: str, *, clock: Callable[[], float] | None = None, busy_timeout_s: float = 30.0,
             durable: bool = True) -> "LabelService":
        """Open (creating or migrating) the store at a SQLAlchemy URL.

        SQLite runs in WAL mode, with a busy timeout and BEGIN IMMEDIATE for every write.
        `durable=True` (the default, and what the app uses) is synchronous=FULL: a confirmed
        commit survives a killed process and a power cut. `durable=False` (synchronous=NORMAL)
        still survives a killed process but may lose the last commits on a power cut; it
        makes each write several times cheaper, for batch writers such as simulated annotators.
        """
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite":
            writer, reader = _sqlite_engines(url, busy_timeout_s, "FULL" if durable else "NORMAL")
        else:
            writer = create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)
            reader = writer
        try:
            migrate(writer)
        except UserError:
            raise
        except Exception as err:  # unreachable server, bad credentials, unwritable file
            raise UserError(f"cannot open label store {url.render_as_string(hide_password=True)}: {err}") from err
        return cls(writer, reader, clock or time.time)

    def close(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """A write transaction. On SQLite, threads of this process queue on a lock first:
        SQLite's busy handler polls with sleeps, a lock hands over at once."""
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    def _read(self) -> Session:
        return Session(self.reader, expire_on_commit=False)

    def _audit(self, s: Session, user_id: int | None, action: str, campaign_id: int | None = None, **detail) -> None:
        s.add(m.AuditLog(at=self.clock(), user_id=user_id, action=action, campaign_id=campaign_id,
                         detail_json=json.dumps(detail, default=str)))

    # ---------------------------------------------------------------- users

    def create_user(self, name: str, password: str | None, role: str = "labeler", simulated: bool = False,
                    actor_id: int | None = None, kind: str | None = None, profile: dict | None = None) -> int:
        """`kind` defaults to "simulated" for a simulated user and "human" otherwise; an "ai"
        user is simulated too (no password) and keeps its `profile` (judge model, prompt,
        principles), so that every AI judgment can be traced to what produced it."""
        kind = kind or ("simulated" if simulated else "human")
        if kind not in USER_KINDS:
            raise UserError(f"user kind must be one of {USER_KINDS}, got {kind!r}")
        simulated = simulated or kind != "human"
        name = (name or "").strip()
        if not name:
            raise UserError("user name must not be empty")
        if role not in ROLES:
            raise UserError(f"role must be one of {ROLES}, got {role!r}")
        if not simulated and not password:
            raise UserError(f"user {name!r}: a password is required (only simulated annotators have none)")
        pw = hash_password(password) if password else None
        with self._tx() as s:
            if s.scalar(select(m.User.id).where(m.User.name == name)) is not None:
                raise UserError(f"user {name!r} already exists")
            user = m.User(name=name, password_hash=pw, role=role, simulated=simulated, created_at=self.clock(), active=True,
                          kind=kind, profile_json=json.dumps(profile, sort_keys=True) if profile is not None else None)
            s.add(user)
            s.flush()
            self._audit(s, actor_id, "create_user", user=name, role=role, simulated=simulated,
                        **({"kind": kind} if kind == "ai" else {}))
            return user.id

    def ensure_user(self, name: str, role: str = "labeler", simulated: bool = True, kind: str | None = None,
                    profile: dict | None = None) -> int:
        """The id of user `name`, created without a password if missing (simulated and AI
        annotators). An existing user of another kind is an error, not a silent relabelling;
        an AI user's profile is updated (and audited) when what judges changed."""
        uid = self.user_id(name)
        if uid is None:
            try:
                return self.create_user(name, None, role=role, simulated=simulated, kind=kind, profile=profile)
            except UserError:
                uid = self.user_id(name)  # created concurrently
        if kind is not None or profile is not None:
            with self._tx() as s:
                user = s.get(m.User, uid)
                if kind is not None and user.kind != kind:
                    raise UserError(f"user {name!r} exists as a {user.kind} labeler, not {kind}")
                new = json.dumps(profile, sort_keys=True) if profile is not None else user.profile_json
                if new != user.profile_json:
                    user.profile_json = new
                    self._audit(s, None, "update_profile", user=name)
        return uid

    def user_profile(self, name: str) -> dict | None:
        """What an AI annotator is (judge model, prompt template, principles), or None."""
        with self._read() as s:
            raw = s.scalar(select(m.User.profile_json).where(m.User.name == name))
        return json.loads(raw) if raw else None

    def user_id(self, name: str) -> int | None:
        with self._read() as s:
            return s.scalar(select(m.User.id).where(m.User.name == name))

    def authenticate(self, name: str, password: str) -> UserInfo | None:
        """The active user with this name and password, else None (one hash either way)."""
        with self._read() as s:
            user = s.scalar(select(m.User).where(m.User.name == (name or "").strip()))
        ok = verify_password(password or "", user.password_hash if user else None)
        if not (ok and user and user.active):
            return None
        return _info(user)

    def get_user(self, user_id: int) -> UserInfo | None:
        with self._read() as s:
            user = s.get(m.User, user_id)
            return _info(user) if user else None

    def get_user_by_name(self, name: str) -> UserInfo | None:
        with self._read() as s:
            user = s.scalar(select(m.User).where(m.User.name == name))
            return _info(user) if user else None

    def list_users(self) -> list[UserInfo]:
        with self._read() as s:
            return [_info(u) for u in s.scalars(select(m.User).order_by(m.User.id))]

    def set_user_active(self, user_id: int, active: bool, actor_id: int | None = None) -> None:
        with self._tx() as s:
            user = s.get(m.User, user_id)
            if user is None:
                raise UserError(f"no user with id {user_id}")
            user.active = active
            if not active:  # signed-in sessions end at once
                for sess in s.scalars(select(m.LoginSession).where(m.LoginSession.user_id == user_id,
                                                                   m.LoginSession.revoked_at.is_(None))):
                    sess.revoked_at = self.clock()
            self._audit(s, actor_id, "activate_user" if active else "deactivate_user", user=user.name)

    def set_password(self, user_id: int, password: str, actor_id: int | None = None) -> None:
        if not password:
            raise UserError("password must not be empty")
        with self._tx() as s:
            user = s.get(m.User, user_id)
            if user is None:
                raise UserError(f"no user with id {user_id}")
            user.password_hash = hash_password(password)
            self._audit(s, actor_id, "set_password", user=user.name)

    def create_session(self, user_id: int, ttl_s: float = 12 * 3600) -> str:
        """A new sign-in token for the user (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._tx() as s:
            s.add(m.LoginSession(token_sha256=_sha256(token), user_id=user_id, created_at=now, expires_at=now + ttl_s))
            self._audit(s, user_id, "login")
        return token

    def session_user(self, token: str | None) -> UserInfo | None:
        """The active user signed in with this token, or None (unknown, expired, revoked)."""
        if not token:
            return None
        with self._read() as s:
            row = s.execute(
                select(m.User).join(m.LoginSession, m.LoginSession.user_id == m.User.id)
                .where(m.LoginSession.token_sha256 == _sha256(token), m.LoginSession.revoked_at.is_(None),
                       m.LoginSession.expires_at > self.clock())
            ).scalar()
            return _info(row) if row is not None and row.active else None

    def revoke_session(self, token: str | None) -> None:
        if not token:
            return
        with self._tx() as s:
            sess = s.scalar(select(m.LoginSession).where(m.LoginSession.token_sha256 == _sha256(token)))
            if sess is not None and sess.revoked_at is None:
                sess.revoked_at = self.clock()
                self._audit(s, sess.user_id, "logout")

    # ---------------------------------------------------------------- campaigns

    def create_campaign(
        self,
        name: str,
        mode: str = "pairwise",
        overlap: int = 1,
        guidelines: str = "",
        items: Iterable[dict] = (),
        gold: Iterable[dict] = (),
        *,
        pairs_per_prompt: int | None = None,
        assignment_ttl_s: float = 1800.0,
        seed: int = 0,
        created_by: int | None = None,
        sources: tuple[str, str] = ("items", "gold"),
    ) -> int:
        """Import candidate rows (see ui.candidates) as a new campaign; returns its id.

        `gold` rows have the same shape plus `"gold": answer`; rows of `items` with a `gold`
        key are gold items too. Gold items are interleaved at seeded random positions.
        `sources` names the two inputs in errors (the files they came from), with 1-based rows.
        """
        name = (name or "").strip()
        if not name:
            raise UserError("campaign name must not be empty")
        if mode not in MODES:
            raise UserError(f"mode must be one of {MODES}, got {mode!r}")
        if int(overlap) < 1:
            raise UserError(f"overlap must be at least 1, got {overlap}")
        if pairs_per_prompt is not None and pairs_per_prompt < 1:
            raise UserError(f"pairs_per_prompt must be at least 1, got {pairs_per_prompt}")
        item_rows = normalize_rows(list(items), sources[0])
        gold_rows = [{**r, "gold": r.get("gold")} for r in normalize_rows(list(gold), sources[1])]
        for source, part in zip(sources, (item_rows, gold_rows)):
            for i, r in enumerate(part, 1):
                if "gold" in r:
                    _check_gold(r, mode, f"{source}: row {i}")
                if mode == "ranking" and len(r["responses"]) > 26:
                    raise UserError(f"{source}: row {i}: field 'responses': at most 26 responses (A-Z) can be ranked")
        rows = item_rows + gold_rows
        if not any("gold" not in r for r in rows):
            raise UserError(f"campaign {name!r}: no items to label")
        rng = random.Random(seed)
        now = self.clock()
        with self._tx() as s:
            if s.scalar(select(m.Campaign.id).where(m.Campaign.name == name)) is not None:
                raise UserError(f"campaign {name!r} already exists")
            camp = m.Campaign(name=name, mode=mode, overlap=int(overlap), guidelines=guidelines or "",
                              assignment_ttl_s=float(assignment_ttl_s), seed=int(seed), created_at=now,
                              created_by=created_by, status="open")
            s.add(camp)
            s.flush()
            normal: list[m.Item] = []
            golden: list[m.Item] = []
            for row in rows:
                prompt = m.Prompt(campaign_id=camp.id, prompt_json=json.dumps(row["prompt"]),
                                  metadata_json=json.dumps(row["metadata"]))
                s.add(prompt)
                s.flush()
                cands = [m.Candidate(prompt_id=prompt.id, idx=j, text=r["text"], policy=r["policy"],
                                     checkpoint=r["checkpoint"], metadata_json=json.dumps(r["metadata"]))
                         for j, r in enumerate(row["responses"])]
                s.add_all(cands)
                s.flush()
                ids = [c.id for c in cands]
                if "gold" in row:
                    golden.append(m.Item(campaign_id=camp.id, prompt_id=prompt.id, candidate_ids_json=json.dumps(ids),
                                         ordinal=0, is_gold=True, gold_json=json.dumps(_gold_to_ids(row["gold"], ids))))
                elif mode == "ranking":
                    normal.append(m.Item(campaign_id=camp.id, prompt_id=prompt.id, candidate_ids_json=json.dumps(ids),
                                         ordinal=0, is_gold=False))
                else:
                    pairs = list(itertools.combinations(ids, 2))
                    if pairs_per_prompt is not None and pairs_per_prompt < len(pairs):
                        pairs = sorted(rng.sample(pairs, pairs_per_prompt))
                    normal += [m.Item(campaign_id=camp.id, prompt_id=prompt.id, candidate_ids_json=json.dumps(list(p)),
                                      ordinal=0, is_gold=False) for p in pairs]
            ordered = list(normal)
            for g in golden:  # interleave gold at random positions
                ordered.insert(rng.randint(0, len(ordered)), g)
            for k, item in enumerate(ordered):
                item.ordinal = k
            s.add_all(ordered)
            self._audit(s, created_by, "create_campaign", camp.id, name=name, mode=mode, overlap=int(overlap),
                        items=len(normal), gold=len(golden))
            return camp.id

    def campaign_id(self, name_or_id: str | int) -> int:
        """Resolve a campaign by name (or numeric id); UserError when there is none."""
        with self._read() as s:
            cid = s.scalar(select(m.Campaign.id).where(m.Campaign.name == str(name_or_id)))
            if cid is None and str(name_or_id).isdigit():
                cid = s.scalar(select(m.Campaign.id).where(m.Campaign.id == int(name_or_id)))
        if cid is None:
            raise UserError(f"no campaign named {name_or_id!r}")
        return cid

    def get_campaign(self, campaign_id: int) -> dict:
        with self._read() as s:
            c = s.get(m.Campaign, campaign_id)
            if c is None:
                raise UserError(f"no campaign with id {campaign_id}")
            return _campaign_dict(c)

    def list_campaigns(self) -> list[dict]:
        with self._read() as s:
            return [_campaign_dict(c) for c in s.scalars(select(m.Campaign).order_by(m.Campaign.id))]

    def set_campaign_status(self, campaign_id: int, status: str, actor_id: int | None = None) -> None:
        if status not in ("open", "closed"):
            raise UserError(f"campaign status must be 'open' or 'closed', got {status!r}")
        with self._tx() as s:
            c = s.get(m.Campaign, campaign_id)
            if c is None:
                raise UserError(f"no campaign with id {campaign_id}")
            c.status = status
            self._audit(s, actor_id, f"{status}_campaign", campaign_id)

    # ---------------------------------------------------------------- who may label

    def set_campaign_labelers(self, campaign_id: int, names: Iterable[str], actor_id: int | None = None) -> list[str]:
        """Restrict the campaign to these labelers (an empty list opens it to everyone again).
        Items they already hold or judged stay theirs; others get no new items from it."""
        wanted = sorted({n.strip() for n in names if n and n.strip()})
        with self._tx() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            ids = dict(s.execute(select(m.User.name, m.User.id).where(m.User.name.in_(wanted))).all()) if wanted else {}
            missing = [n for n in wanted if n not in ids]
            if missing:
                raise UserError(f"no user named {', '.join(repr(n) for n in missing)}")
            for row in s.scalars(select(m.CampaignLabeler).where(m.CampaignLabeler.campaign_id == campaign_id)):
                s.delete(row)
            s.flush()
            s.add_all([m.CampaignLabeler(campaign_id=campaign_id, user_id=uid) for uid in ids.values()])
            self._audit(s, actor_id, "restrict_campaign", campaign_id, labelers=wanted or "everyone")
        return wanted

    def campaign_labelers(self, campaign_id: int) -> list[str]:
        """The labelers the campaign is restricted to; empty when it is open to everyone."""
        with self._read() as s:
            return sorted(s.scalars(select(m.User.name).join(m.CampaignLabeler, m.CampaignLabeler.user_id == m.User.id)
                                    .where(m.CampaignLabeler.campaign_id == campaign_id)))

    def campaigns_for(self, user_id: int) -> list[dict]:
        """The open campaigns this user may label: unrestricted ones, those naming them, and
        every one for an admin."""
        with self._read() as s:
            user = s.get(m.User, user_id)
            q = select(m.Campaign).where(m.Campaign.status == "open").order_by(m.Campaign.id)
            if user is None or user.role != "admin":
                restricted = exists().where(m.CampaignLabeler.campaign_id == m.Campaign.id)
                named = exists().where(m.CampaignLabeler.campaign_id == m.Campaign.id,
                                       m.CampaignLabeler.user_id == user_id)
                q = q.where(or_(~restricted, named))
            return [_campaign_dict(c) for c in s.scalars(q)]

    def set_min_gold_accuracy(self, campaign_id: int, threshold: float | None, actor_id: int | None = None) -> None:
        """Pause labelers whose gold accuracy in the campaign is below `threshold` (None: never)."""
        if threshold is not None and not 0 <= threshold <= 1:
            raise UserError(f"minimum gold accuracy must be from 0 to 1, got {threshold}")
        with self._tx() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            camp.min_gold_accuracy = threshold
            self._audit(s, actor_id, "set_gold_threshold", campaign_id, min_gold_accuracy=threshold)

    def pause_reason(self, user_id: int, campaign_id: int) -> str | None:
        """Why this labeler gets no new items here although items are left, or None."""
        with self._read() as s:
            user, camp = s.get(m.User, user_id), s.get(m.Campaign, campaign_id)
            if user is None or camp is None:
                return None
            return self._pause_reason(s, user, camp)

    def _pause_reason(self, s: Session, user: m.User, camp: m.Campaign) -> str | None:
        if user.role == "admin":
            return None
        # one statement: this runs whenever a labeler takes a new item
        restricted, named = s.execute(select(
            exists().where(m.CampaignLabeler.campaign_id == camp.id),
            exists().where(m.CampaignLabeler.campaign_id == camp.id, m.CampaignLabeler.user_id == user.id))).one()
        if restricted and not named:
            return "this campaign is restricted to other labelers"
        if camp.min_gold_accuracy is not None:
            acc, n = quality.gold_accuracy(self._judgment_rows(s, camp.id, user_id=user.id, gold_only=True))
            if n >= GOLD_PAUSE_MIN_ANSWERS and acc < camp.min_gold_accuracy:
                return (f"paused: your accuracy on check items is {100 * acc:.0f}% (below "
                        f"{100 * camp.min_gold_accuracy:.0f}%); please re-read the guidelines and ask your lead")
        return None

    def paused_labelers(self, campaign_id: int) -> dict[str, str]:
        """Labelers of the campaign now paused by its gold threshold -> why."""
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None or camp.min_gold_accuracy is None:
                return {}
            acc = quality.campaign_quality(self._judgment_rows(s, campaign_id, gold_only=True), camp.mode)["labelers"]
        return {name: f"paused (gold {100 * q['gold_accuracy']:.0f}%)" for name, q in acc.items()
                if q["gold_judgments"] >= GOLD_PAUSE_MIN_ANSWERS and q["gold_accuracy"] < camp.min_gold_accuracy}

    # ---------------------------------------------------------------- review: disagreements, adjudication

    def review_items(self, campaign_id: int) -> list[dict]:
        """Items the lead should look at: labelers disagree on it, or someone failed it (gold).
        Each with the prompt, the responses in import order, every vote with its rationale,
        the gold answer and the current adjudication. See ui.review."""
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            judgments = self._judgment_rows(s, campaign_id)
            flagged = review.flagged_items(judgments, camp.mode)
            if not flagged:
                return []
            items = {it.id: it for it in s.scalars(select(m.Item).where(m.Item.id.in_(flagged)))}
            prompts = {p.id: p for p in s.scalars(select(m.Prompt).where(m.Prompt.id.in_({i.prompt_id for i in items.values()})))}
            cands = {c.id: c for c in s.scalars(select(m.Candidate).where(m.Candidate.prompt_id.in_(prompts)))}
            adjudications = self._adjudications(s, campaign_id)
        return review.cases(camp.mode, flagged, items, prompts, cands, adjudications)

    def _adjudications(self, s: Session, campaign_id: int) -> dict[int, dict]:
        """item id -> its current adjudication (with the lead's name)."""
        q = (select(m.Adjudication, m.User.name).join(m.User, m.User.id == m.Adjudication.user_id)
             .where(m.Adjudication.campaign_id == campaign_id, m.Adjudication.superseded_at.is_(None)))
        return {a.item_id: {"id": a.id, "user": name, "label": a.label, "winner": a.winner_id, "loser": a.loser_id,
                            "ranking": json.loads(a.ranking_json) if a.ranking_json else None,
                            "rationale": a.rationale, "created_at": a.created_at}
                for a, name in s.execute(q)}

    def adjudicate(self, item_id: int, actor_id: int, answer: str | int | list[int], rationale: str = "") -> int:
        """Record the lead's final label for an item; returns the adjudication's id.

        `answer`, in the item's import order (what the review view shows as responses 1, 2,
        ...): pairwise 0 or 1 (the better response), "tie" or "both_bad"; ranking a list of
        0-based response indices, best first. A later adjudication replaces this one (both
        are kept, the older marked superseded). Gold items are refused: their answer is the
        gold file's, and a wrong one is fixed there.
        """
        now = self.clock()
        with self._tx() as s:
            item = s.scalar(select(m.Item).where(m.Item.id == item_id).with_for_update())
            if item is None:
                raise UserError(f"no item with id {item_id}")
            if item.is_gold:
                raise UserError(f"item {item_id} is a gold item: its answer comes from the gold file")
            camp = s.get(m.Campaign, item.campaign_id)
            ids = json.loads(item.candidate_ids_json)
            adj = m.Adjudication(item_id=item.id, campaign_id=camp.id, user_id=actor_id,
                                 rationale=(rationale or "")[:20000], created_at=now)
            if camp.mode == "pairwise":
                if answer in ("tie", "both_bad"):
                    adj.label = answer
                elif answer in (0, 1) and not isinstance(answer, bool):
                    adj.label, adj.winner_id, adj.loser_id = "preference", ids[answer], ids[1 - answer]
                else:
                    raise UserError(f"a pairwise final label is 1 or 2 (the better response), tie or both_bad, "
                                    f"got {answer!r}")
            else:
                if not (isinstance(answer, list) and len(answer) >= 2 and len(set(answer)) == len(answer)
                        and all(isinstance(x, int) and 0 <= x < len(ids) for x in answer)):
                    raise UserError(f"a final ranking lists at least two of the {len(ids)} responses, each once, best first")
                adj.label, adj.ranking_json = "ranking", json.dumps([ids[x] for x in answer])
            for old in s.scalars(select(m.Adjudication).where(m.Adjudication.item_id == item.id,
                                                              m.Adjudication.superseded_at.is_(None))):
                old.superseded_at = now
            s.add(adj)
            s.flush()
            self._audit(s, actor_id, "adjudicate", camp.id, adjudication=adj.id, item=item.id,
                        answer=answer, rationale=adj.rationale)
            return adj.id

    def send_back(self, item_id: int, actor_id: int | None = None, more: int = 1) -> int:
        """Ask for `more` labels of an item beyond the campaign's overlap; returns how many
        labels the item now asks for in all."""
        if more < 1:
            raise UserError(f"ask for at least one more label, got {more}")
        with self._tx() as s:
            item = s.scalar(select(m.Item).where(m.Item.id == item_id).with_for_update())
            if item is None:
                raise UserError(f"no item with id {item_id}")
            if item.is_gold:
                raise UserError(f"item {item_id} is a gold item: every labeler already meets it")
            camp = s.get(m.Campaign, item.campaign_id)
            item.extra_overlap += more
            item.filled = False
            self._audit(s, actor_id, "send_back", camp.id, item=item.id, labels=camp.overlap + item.extra_overlap)
            return camp.overlap + item.extra_overlap

    # ---------------------------------------------------------------- assignment

    def next_assignment(self, user_id: int, campaign_id: int, exclude: Iterable[int] = ()) -> Assignment | None:
        """The labeler's current item, or a new one; None when nothing is left for them.

        `exclude`: assignments the caller already holds and does not want again (see
        `next_assignments`)."""
        exclude = frozenset(exclude)
        for attempt in range(5):
            try:
                return self._next_assignment(user_id, campaign_id, take_new=True, exclude=exclude)
            except IntegrityError:  # PostgreSQL: a concurrent request by the same user won the race
                if attempt == 4:
                    raise
        return None

    def next_assignments(self, user_id: int, campaign_id: int, n: int) -> list[Assignment]:
        """Up to `n` items held at once: the ones this user already holds first, then new ones.

        For batch annotators (an AI judge scores a batch of pairs in one forward pass); each
        item is still held, judged and submitted one by one under the same rules as a person's."""
        out: list[Assignment] = []
        while len(out) < n:
            a = self.next_assignment(user_id, campaign_id, exclude=[x.id for x in out])
            if a is None:
                break
            out.append(a)
        return out

    def current_assignment(self, user_id: int, campaign_id: int) -> Assignment | None:
        """The item this user already holds in the campaign, or None; never takes a new one.

        What a page shows to someone who has not asked to label (an admin looking around):
        holding an item keeps it from other labelers until it expires.
        """
        return self._next_assignment(user_id, campaign_id, take_new=False)

    def held_assignments(self, campaign_id: int | None = None) -> list[dict]:
        """Active, unexpired assignments (who holds which item, since when, until when)."""
        now = self.clock()
        with self._read() as s:
            q = (select(m.Assignment, m.User.name, m.Campaign.name)
                 .join(m.User, m.User.id == m.Assignment.user_id)
                 .join(m.Campaign, m.Campaign.id == m.Assignment.campaign_id)
                 .where(m.Assignment.status == "active", m.Assignment.expires_at > now)
                 .order_by(m.Assignment.activated_at))
            if campaign_id is not None:
                q = q.where(m.Assignment.campaign_id == campaign_id)
            return [{"assignment": a.id, "user": user, "campaign": camp, "item": a.item_id,
                     "since": a.activated_at, "expires_at": a.expires_at} for a, user, camp in s.execute(q)]

    def release_assignment(self, assignment_id: int, actor_id: int | None = None) -> None:
        """Free an item that someone holds without answering (status `released`): it goes to
        the next labeler at once instead of after the expiry. Its holder does not get it again,
        as after a skip; an answer they send for it is refused."""
        with self._tx() as s:
            a = s.scalar(select(m.Assignment).where(m.Assignment.id == assignment_id).with_for_update())
            if a is None:
                raise UserError(f"no assignment with id {assignment_id}")
            if a.status != "active":
                raise UserError(f"assignment {assignment_id} is {a.status}: only an item being held can be released")
            holder = s.get(m.User, a.user_id)
            a.status, a.finished_at = "released", self.clock()
            self._audit(s, actor_id, "release", a.campaign_id, assignment=a.id, item=a.item_id, holder=holder.name)

    def _next_assignment(self, user_id: int, campaign_id: int, take_new: bool,
                         exclude: frozenset[int] = frozenset()) -> Assignment | None:
        now = self.clock()
        with self._tx() as s:
            user, camp = self._check_user_campaign(s, user_id, campaign_id)
            # 1. The labeler's own active assignments (reload, undo): most recent first.
            mine = s.scalars(
                select(m.Assignment)
                .where(m.Assignment.user_id == user_id, m.Assignment.campaign_id == campaign_id,
                       m.Assignment.status == "active")
                .order_by(m.Assignment.activated_at.desc(), m.Assignment.id.desc())
                .with_for_update()
            ).all()
            for a in mine:
                if a.id in exclude:
                    continue
                if a.expires_at > now:
                    return self._to_assignment(s, a, camp)
                item = s.get(m.Item, a.item_id)
                if item.is_gold or self._taken(s, a.item_id, now, exclude=a.id) < camp.overlap + item.extra_overlap:
                    a.expires_at = now + camp.assignment_ttl_s
                    return self._to_assignment(s, a, camp)
                a.status = "expired"  # handed on while this labeler was away
                a.finished_at = now
            if camp.status != "open" or not take_new or self._pause_reason(s, user, camp) is not None:
                return None
            # 2. A new item: first in campaign order that this labeler never had and that has room.
            skipped: list[int] = []
            while True:
                item = s.scalar(
                    select(m.Item)
                    .where(*self._open_to(user_id, camp, now), m.Item.id.not_in(skipped) if skipped else true())
                    .order_by(m.Item.ordinal)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if item is None:
                    return None
                # Re-check under the row lock (PostgreSQL: a fresh statement sees commits made
                # before we got the lock). SQLite needs none: BEGIN IMMEDIATE serialises every
                # writer, so the query above already saw all of them.
                if self.engine.dialect.name != "sqlite":
                    had = s.scalar(select(func.count()).where(m.Assignment.item_id == item.id,
                                                              m.Assignment.user_id == user_id))
                    if had or (not item.is_gold and self._taken(s, item.id, now) >= camp.overlap + item.extra_overlap):
                        skipped.append(item.id)
                        continue
                order = json.loads(item.candidate_ids_json)
                secrets.SystemRandom().shuffle(order)  # anonymised, random positions
                a = m.Assignment(item_id=item.id, campaign_id=campaign_id, user_id=user_id, status="active",
                                 shown_order_json=json.dumps(order), token=uuid.uuid4().hex, created_at=now,
                                 activated_at=now, expires_at=now + camp.assignment_ttl_s)
                s.add(a)
                s.flush()
                return self._to_assignment(s, a, camp)

    def _open_to(self, user_id: int, camp: m.Campaign, now: float) -> tuple:
        """Items of the campaign this labeler may be given now. `filled` comes first: its index
        skips the items already judged `overlap` times without counting their assignments."""
        return (m.Item.campaign_id == camp.id, m.Item.filled == false(), ~self._had(user_id),
                or_(m.Item.is_gold, self._taken_expr(now) < camp.overlap + m.Item.extra_overlap))

    @staticmethod
    def _had(user_id: int):
        return exists().where(m.Assignment.item_id == m.Item.id, m.Assignment.user_id == user_id)

    @staticmethod
    def _holds(now: float):
        """Assignments that hold a slot of their item: judged, or active and unexpired."""
        return or_(m.Assignment.status == "done", and_(m.Assignment.status == "active", m.Assignment.expires_at > now))

    def _taken_expr(self, now: float):
        return (select(func.count()).where(m.Assignment.item_id == m.Item.id, self._holds(now))
                .correlate(m.Item).scalar_subquery())

    def _taken(self, s: Session, item_id: int, now: float, exclude: int | None = None) -> int:
        q = select(func.count()).where(m.Assignment.item_id == item_id, self._holds(now))
        if exclude is not None:
            q = q.where(m.Assignment.id != exclude)
        return s.scalar(q)

    @staticmethod
    def _judged(s: Session, item_id: int) -> int:
        return s.scalar(select(func.count()).where(m.Assignment.item_id == item_id, m.Assignment.status == "done"))

    def _check_user_campaign(self, s: Session, user_id: int, campaign_id: int) -> tuple[m.User, m.Campaign]:
        user = s.get(m.User, user_id)
        if user is None or not user.active:
            raise UserError(f"no active user with id {user_id}")
        camp = s.get(m.Campaign, campaign_id)
        if camp is None:
            raise UserError(f"no campaign with id {campaign_id}")
        return user, camp

    def _to_assignment(self, s: Session, a: m.Assignment, camp: m.Campaign) -> Assignment:
        order = json.loads(a.shown_order_json)
        item = s.get(m.Item, a.item_id)
        prompt = s.get(m.Prompt, item.prompt_id)
        texts = dict(s.execute(select(m.Candidate.id, m.Candidate.text).where(m.Candidate.id.in_(order))).all())
        return Assignment(id=a.id, item_id=a.item_id, campaign_id=camp.id, mode=camp.mode,
                          prompt=json.loads(prompt.prompt_json), responses=[texts[c] for c in order],
                          candidate_ids=order, token=a.token, expires_at=a.expires_at,
                          metadata=json.loads(prompt.metadata_json))

    # ---------------------------------------------------------------- judging

    def submit_judgment(
        self,
        assignment_id: int,
        user_id: int,
        choice: str | None = None,
        ranking: list[int | str] | None = None,
        rationale: str = "",
        time_spent_s: float | None = None,
        client_token: str | None = None,
        confidence: float | None = None,
    ) -> int:
        """Record a judgment; returns its id. A repeated `client_token` returns the first id.

        Pairwise: `choice` is "A", "B" (shown positions), "tie" or "both_bad". Ranking:
        `ranking` lists shown positions best first, as letters ("C", "A") or 0-based ints;
        a partial ranking leaves the rest unranked. Without `time_spent_s` the time since the
        item was (re)shown is stored. `confidence` (in [0, 1]) is what an AI judge reports.
        """
        if confidence is not None and not 0.0 <= float(confidence) <= 1.0:
            raise UserError(f"confidence must be in [0, 1], got {confidence}")
        for attempt in range(3):
            try:
                return self._submit(assignment_id, user_id, choice, ranking, rationale, time_spent_s, client_token,
                                    confidence)
            except IntegrityError:  # PostgreSQL: the same client_token committed concurrently
                if client_token is None or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _submit(self, assignment_id, user_id, choice, ranking, rationale, time_spent_s, client_token,
                confidence=None) -> int:
        now = self.clock()
        with self._tx() as s:
            if client_token:
                prior = s.scalar(select(m.Judgment).where(m.Judgment.client_token == client_token))
                if prior is not None:
                    if prior.user_id != user_id or prior.assignment_id != assignment_id:
                        raise UserError("client_token was already used for another judgment")
                    return prior.id
            a = s.scalar(select(m.Assignment).where(m.Assignment.id == assignment_id).with_for_update())
            if a is None or a.user_id != user_id:
                raise UserError(f"assignment {assignment_id} is not assigned to this user")
            if a.status != "active":
                raise UserError(f"assignment {assignment_id} is {a.status}, not open for a judgment")
            user, camp = self._check_user_campaign(s, user_id, a.campaign_id)
            item = s.scalar(select(m.Item).where(m.Item.id == a.item_id).with_for_update())
            if (a.expires_at <= now and not item.is_gold
                    and self._taken(s, item.id, now, exclude=a.id) >= camp.overlap + item.extra_overlap):
                raise UserError("this item expired and was given to another labeler; take the next one")
            order = json.loads(a.shown_order_json)
            j = m.Judgment(assignment_id=a.id, item_id=a.item_id, campaign_id=a.campaign_id, user_id=user_id,
                           shown_order_json=a.shown_order_json, rationale=(rationale or "")[:20000],
                           time_spent_s=float(time_spent_s) if time_spent_s is not None else round(now - a.activated_at, 3),
                           client_token=client_token or None, created_at=now,
                           confidence=float(confidence) if confidence is not None else None)
            if camp.mode == "pairwise":
                if ranking is not None:
                    raise UserError("this is a pairwise campaign: give choice='A'|'B'|'tie'|'both_bad', not a ranking")
                c = {"a": "A", "b": "B"}.get(str(choice).lower(), choice)
                if c not in CHOICES:
                    raise UserError(f"choice must be one of {CHOICES}, got {choice!r}")
                j.choice = c
                if c in ("A", "B"):
                    w = 0 if c == "A" else 1
                    j.winner_id, j.loser_id = order[w], order[1 - w]
            else:
                if choice is not None:
                    raise UserError("this is a ranking campaign: give ranking=[...] (shown positions, best first)")
                positions = _parse_ranking(ranking, len(order))
                j.ranking_json = json.dumps([order[p] for p in positions])
                j.ranking_shown = ">".join(position_label(p) for p in positions)
            a.status, a.finished_at = "done", now
            s.add(j)
            s.flush()
            if not item.is_gold:
                item.filled = self._judged(s, item.id) >= camp.overlap + item.extra_overlap
            self._audit(s, user_id, "judge", a.campaign_id, judgment=j.id, assignment=a.id, item=a.item_id,
                        choice=j.choice, ranking=j.ranking_shown)
            return j.id

    def skip(self, assignment_id: int, user_id: int, reason: str = "") -> None:
        """Give an item back; it is never served to this labeler again (unless undone)."""
        now = self.clock()
        with self._tx() as s:
            a = s.scalar(select(m.Assignment).where(m.Assignment.id == assignment_id).with_for_update())
            if a is None or a.user_id != user_id:
                raise UserError(f"assignment {assignment_id} is not assigned to this user")
            if a.status == "skipped":
                return  # a double-clicked skip
            if a.status != "active":
                raise UserError(f"assignment {assignment_id} is {a.status}; only an open item can be skipped")
            a.status, a.finished_at, a.skip_reason = "skipped", now, (reason or "")[:2000]
            self._audit(s, user_id, "skip", a.campaign_id, assignment=a.id, item=a.item_id, reason=a.skip_reason)

    def undo_last(self, user_id: int, campaign_id: int) -> Assignment | None:
        """Take back the labeler's latest judgment or skip in this campaign; returns the
        reopened assignment (served again by next_assignment), or None if nothing to undo.
        Repeated calls walk further back. The judgment is kept, marked retracted."""
        now = self.clock()
        with self._tx() as s:
            _, camp = self._check_user_campaign(s, user_id, campaign_id)
            a = s.scalar(
                select(m.Assignment)
                .where(m.Assignment.user_id == user_id, m.Assignment.campaign_id == campaign_id,
                       m.Assignment.status.in_(("done", "skipped")))
                .order_by(m.Assignment.finished_at.desc(), m.Assignment.id.desc())
                .limit(1)
                .with_for_update()
            )
            if a is None:
                return None
            detail: dict[str, Any] = {"assignment": a.id, "item": a.item_id, "was": a.status}
            item = s.scalar(select(m.Item).where(m.Item.id == a.item_id).with_for_update())
            if a.status == "done":
                j = s.scalar(select(m.Judgment).where(m.Judgment.assignment_id == a.id, m.Judgment.retracted_at.is_(None)))
                if j is not None:
                    j.retracted_at = now
                    detail["judgment"] = j.id
                item.filled = False  # its slot is open again, held by this reactivated assignment
            else:
                if not item.is_gold and self._taken(s, item.id, now, exclude=a.id) >= camp.overlap + item.extra_overlap:
                    raise UserError("cannot undo that skip: the item has since gone to other labelers")
                a.skip_reason = None
            a.status, a.finished_at = "active", None
            a.activated_at, a.expires_at, a.token = now, now + camp.assignment_ttl_s, uuid.uuid4().hex
            self._audit(s, user_id, "undo", campaign_id, **detail)
            return self._to_assignment(s, a, camp)

    # ---------------------------------------------------------------- reading

    def user_progress(self, user_id: int, campaign_id: int) -> dict:
        """One labeler's own counts: judged, skipped, time spent, items still open to them."""
        now = self.clock()
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            mine = (m.Judgment.user_id == user_id, m.Judgment.campaign_id == campaign_id,
                    m.Judgment.retracted_at.is_(None))
            by_status = lambda status: select(func.count()).where(  # noqa: E731
                m.Assignment.user_id == user_id, m.Assignment.campaign_id == campaign_id,
                m.Assignment.status == status).scalar_subquery()
            # one statement (every count is a scalar subquery): this runs after every click
            judged, spent, skipped, open_, current = s.execute(select(
                select(func.count()).where(*mine).scalar_subquery(),
                select(func.coalesce(func.sum(m.Judgment.time_spent_s), 0.0)).where(*mine).scalar_subquery(),
                by_status("skipped"),
                select(func.count()).select_from(m.Item).where(*self._open_to(user_id, camp, now)).scalar_subquery(),
                by_status("active"),
            )).one()
        return {"campaign": camp.name, "judged": judged, "skipped": skipped, "time_spent_s": round(float(spent), 1),
                "remaining": open_ + current}

    def _judgment_rows(self, s: Session, campaign_id: int, user_id: int | None = None,
                       gold_only: bool = False) -> list[dict]:
        q = (select(m.Judgment, m.User, m.Item)
             .join(m.User, m.User.id == m.Judgment.user_id)
             .join(m.Item, m.Item.id == m.Judgment.item_id)
             .where(m.Judgment.campaign_id == campaign_id, m.Judgment.retracted_at.is_(None))
             .order_by(m.Judgment.id))
        if user_id is not None:
            q = q.where(m.Judgment.user_id == user_id)
        if gold_only:
            q = q.where(m.Item.is_gold.is_(True))
        rows = []
        for j, u, it in s.execute(q):
            rows.append({
                "id": j.id, "item_id": j.item_id, "user": u.name, "user_id": u.id, "simulated": u.simulated,
                "kind": u.kind, "confidence": j.confidence,
                "choice": j.choice, "winner": j.winner_id, "loser": j.loser_id,
                "ranking": json.loads(j.ranking_json) if j.ranking_json else None,
                "shown": json.loads(j.shown_order_json), "rationale": j.rationale, "time_spent_s": j.time_spent_s,
                "created_at": j.created_at, "is_gold": it.is_gold,
                "gold": json.loads(it.gold_json) if it.gold_json else None,
                "candidates": json.loads(it.candidate_ids_json),
            })
        return rows

    def progress(self, campaign_id: int) -> dict:
        """Campaign counts and per-labeler speed (admin view)."""
        now = self.clock()
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            n_items = s.scalar(select(func.count()).where(m.Item.campaign_id == campaign_id, m.Item.is_gold.is_(False)))
            n_gold = s.scalar(select(func.count()).where(m.Item.campaign_id == campaign_id, m.Item.is_gold.is_(True)))
            judgments = self._judgment_rows(s, campaign_id)
            skips = dict(s.execute(
                select(m.User.name, func.count()).select_from(m.Assignment).join(m.User, m.User.id == m.Assignment.user_id)
                .where(m.Assignment.campaign_id == campaign_id, m.Assignment.status == "skipped")
                .group_by(m.User.name)).all())
            active = s.scalar(select(func.count()).where(m.Assignment.campaign_id == campaign_id,
                                                          m.Assignment.status == "active", m.Assignment.expires_at > now))
            extra = dict(s.execute(select(m.Item.id, m.Item.extra_overlap).where(
                m.Item.campaign_id == campaign_id, m.Item.extra_overlap > 0)).all())
            adjudicated = s.scalar(select(func.count()).where(m.Adjudication.campaign_id == campaign_id,
                                                              m.Adjudication.superseded_at.is_(None)))
        per_item: dict[int, int] = {}
        for r in judgments:
            if not r["is_gold"]:
                per_item[r["item_id"]] = per_item.get(r["item_id"], 0) + 1
        cap = lambda item_id: camp.overlap + extra.get(item_id, 0)  # noqa: E731 (items sent back ask for more)
        done = sum(min(n, cap(i)) for i, n in per_item.items())
        target = n_items * camp.overlap + sum(extra.values())
        return {
            "campaign": camp.name, "mode": camp.mode, "overlap": camp.overlap, "status": camp.status,
            "items": n_items, "gold_items": n_gold, "judgments": sum(per_item.values()),
            "gold_judgments": sum(1 for r in judgments if r["is_gold"]),
            "complete_items": sum(1 for i, n in per_item.items() if n >= cap(i)),
            "sent_back": len(extra), "adjudicated": adjudicated,
            "target_judgments": target, "fraction_done": round(done / target, 4) if target else 1.0,
            "skips": sum(skips.values()), "active_assignments": active,
            "labelers": quality.labeler_speed(judgments, skips),
        }

    def agreement(self, campaign_id: int) -> dict:
        """Agreement (pairwise and Krippendorff's alpha), gold accuracy and position bias,
        per campaign and per labeler. See ui.agreement for the definitions."""
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            judgments = self._judgment_rows(s, campaign_id)
        return quality.campaign_quality(judgments, camp.mode)

    def export(
        self,
        campaign_id: int,
        path: str | Path,
        format: str | None = None,
        aggregation: str = "all",
        min_gold_accuracy: float | None = None,
        include_simulated: bool = True,
        include_ties: bool = False,
        include_gold: bool = False,
        actor_id: int | None = None,
        include_ai: bool = True,
    ) -> int:
        """Write the campaign's labels as reward-stage rows; returns the number of rows.

        The format follows the path (.jsonl, .parquet, or a folder name without suffix for a
        `datasets` folder); `format`, if given, must agree. `min_gold_accuracy` drops every
        judgment of labelers whose gold accuracy is below it (labelers without gold answers
        are kept). Gold items themselves are exported only with include_gold.
        `include_simulated=False` leaves out simulated personas, `include_ai=False` AI judges
        (users of kind "ai"): each kind is chosen on its own.

        See ui.export for the row format, the aggregation choices and how ties are written.
        """
        if aggregation not in ("all", "majority"):
            raise UserError(f"aggregation must be 'all' or 'majority', got {aggregation!r}")
        if format is not None and format not in exporting.FORMATS:
            raise UserError(f"export format must be one of {exporting.FORMATS}, got {format!r}")
        with self._read() as s:
            camp = s.get(m.Campaign, campaign_id)
            if camp is None:
                raise UserError(f"no campaign with id {campaign_id}")
            judgments = self._judgment_rows(s, campaign_id)
            adjudications = self._adjudications(s, campaign_id)
            item_ids = {r["item_id"] for r in judgments} | set(adjudications)
            items = {it.id: it for it in s.scalars(select(m.Item).where(m.Item.id.in_(item_ids)))} if item_ids else {}
            prompts = {p.id: p for p in s.scalars(select(m.Prompt).where(m.Prompt.id.in_({it.prompt_id for it in items.values()})))} if items else {}
            cands = {c.id: c for c in s.scalars(select(m.Candidate).where(m.Candidate.prompt_id.in_(prompts)))} if prompts else {}
        gold_acc = quality.campaign_quality(judgments, camp.mode)["labelers"]
        keep = []
        for r in judgments:
            if not include_simulated and r["kind"] == "simulated":
                continue
            if not include_ai and r["kind"] == "ai":
                continue
            if min_gold_accuracy is not None:
                acc = gold_acc.get(r["user"], {}).get("gold_accuracy")
                if acc is not None and acc < min_gold_accuracy:
                    continue
            if r["is_gold"] and not include_gold:
                continue
            keep.append(r)
        rows = exporting.build_rows(camp.name, camp.mode, keep, items, prompts, cands, aggregation, include_ties,
                                    adjudications)
        exporting.write_rows(rows, Path(path), format)
        with self._tx() as s:
            self._audit(s, actor_id, "export", campaign_id, destination=str(path), format=format, aggregation=aggregation,
                        rows=len(rows), min_gold_accuracy=min_gold_accuracy, include_simulated=include_simulated,
                        include_ai=include_ai)
        return len(rows)

    def audit_log(self, campaign_id: int | None = None, limit: int = 200) -> list[dict]:
        """The newest entries first: every campaign's and none's (sign-ins, user changes)
        unless `campaign_id` narrows it. Each entry carries the acting user's and the
        campaign's names beside their ids, since ids alone mean nothing to a reader."""
        with self._read() as s:
            q = (select(m.AuditLog, m.User.name, m.Campaign.name)
                 .outerjoin(m.User, m.User.id == m.AuditLog.user_id)
                 .outerjoin(m.Campaign, m.Campaign.id == m.AuditLog.campaign_id)
                 .order_by(m.AuditLog.id.desc()).limit(limit))
            if campaign_id is not None:
                q = q.where(m.AuditLog.campaign_id == campaign_id)
            return [{"id": r.id, "at": r.at, "user_id": r.user_id, "user": user, "action": r.action,
                     "campaign_id": r.campaign_id, "campaign": camp, "detail": json.loads(r.detail_json)}
                    for r, user, camp in s.execute(q)]


# -------------------------------------------------------------------- helpers


def _sqlite_engines(url, busy_timeout_s: float, synchronous: str = "FULL") -> tuple[Engine, Engine]:
    """A writer engine whose transactions start with BEGIN IMMEDIATE, and a reader engine with
    plain (deferred) BEGIN; both on WAL. In-memory databases share one connection (tests only)."""
    database = url.database
    memory = database in (None, "", ":memory:")
    if not memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def make(begin: str) -> Engine:
        kw: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
        if memory:
            kw["poolclass"] = StaticPool
        else:
            kw.update(pool_size=8, max_overflow=64, pool_timeout=60)
        engine = create_engine(url, **kw)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see "begin" below)
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql(begin)

        return engine

    writer = make("BEGIN IMMEDIATE")
    return (writer, writer) if memory else (writer, make("BEGIN"))


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(u: m.User) -> UserInfo:
    return UserInfo(id=u.id, name=u.name, role=u.role, simulated=bool(u.simulated), active=bool(u.active),
                    kind=u.kind or ("simulated" if u.simulated else "human"))


def _campaign_dict(c: m.Campaign) -> dict:
    return {"id": c.id, "name": c.name, "mode": c.mode, "overlap": c.overlap, "guidelines": c.guidelines,
            "status": c.status, "assignment_ttl_s": c.assignment_ttl_s, "created_at": c.created_at,
            "min_gold_accuracy": c.min_gold_accuracy}


def _check_gold(row: dict, mode: str, where: str) -> None:
    g, k = row["gold"], len(row["responses"])
    if mode == "pairwise":
        if k != 2:
            raise UserError(f"{where}: a pairwise gold item needs exactly 2 responses, got {k}")
        if g not in (0, 1, "tie", "both_bad"):
            raise UserError(f"{where}: field 'gold': expected 0, 1, 'tie' or 'both_bad', got {g!r}")
    else:
        if not (isinstance(g, list) and g and all(isinstance(x, int) and 0 <= x < k for x in g) and len(set(g)) == len(g)):
            raise UserError(f"{where}: field 'gold': expected a list of distinct response indices, best first")


def _gold_to_ids(g, ids: list[int]) -> dict:
    if isinstance(g, list):
        return {"ranking": [ids[x] for x in g]}
    if g in ("tie", "both_bad"):
        return {"label": g}
    return {"winner": ids[g], "loser": ids[1 - g]}


def _parse_ranking(ranking, k: int) -> list[int]:
    if not ranking:
        raise UserError("ranking must list at least one response, best first")
    positions = []
    for r in ranking:
        if isinstance(r, str) and len(r.strip()) == 1 and r.strip().isalpha():
            p = ord(r.strip().upper()) - ord("A")
        elif isinstance(r, int) and not isinstance(r, bool):
            p = r
        else:
            raise UserError(f"ranking entries must be letters (A, B, ...) or 0-based positions, got {r!r}")
        if not 0 <= p < k:
            raise UserError(f"ranking entry {r!r} is out of range for {k} responses")
        positions.append(p)
    if len(set(positions)) != len(positions):
        raise UserError("ranking lists a response twice")
    # Left-out responses stay unranked, even the one left out of K - 1: the labeler may have
    # left it out because they could not place it, and the app tells them it stays unranked.
    if len(positions) < 2:
        raise UserError("rank at least two responses (best first); the rest may stay unranked")
    return positions
