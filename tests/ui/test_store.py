"""The label store: assignment rules, expiry, idempotent submit, skip/undo, migrations, export."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, inspect, text

from alignment.data.files import read_rows
from alignment.data.rows import validate_rows
from alignment.errors import UserError
from tests.ui.conftest import pair_rows
from ui import migrations
from ui.agreement import krippendorff_alpha_nominal, pairwise_agreement
from ui.models import Base
from ui.service import LabelService


def users(svc, n, prefix="u"):
    """Labelers without passwords (scrypt is deliberately slow; these tests never log in)."""
    return [svc.create_user(f"{prefix}{i}", None, simulated=True) for i in range(n)]


def drain(svc, uid, cid, choice="A"):
    n = 0
    while (a := svc.next_assignment(uid, cid)) is not None:
        svc.submit_judgment(a.id, uid, choice=choice, client_token=a.token)
        n += 1
    return n


# ---------------------------------------------------------------- assignment


def test_each_item_goes_to_overlap_distinct_labelers(svc):
    cid = svc.create_campaign("c", items=pair_rows(5), overlap=2)
    u = users(svc, 3)
    seen = {x: [] for x in u}
    # interleave the labelers so that they compete for items
    active = set(u)
    while active:
        for x in list(active):
            a = svc.next_assignment(x, cid)
            if a is None:
                active.discard(x)
                continue
            assert a.item_id not in seen[x], "same item twice to one labeler"
            seen[x].append(a.item_id)
            svc.submit_judgment(a.id, x, choice="B")
    per_item = Counter(i for items in seen.values() for i in items)
    assert sorted(per_item.values()) == [2] * 5
    p = svc.progress(cid)
    assert p["complete_items"] == 5 and p["fraction_done"] == 1.0 and p["judgments"] == 10


def test_reload_returns_the_same_assignment_in_the_same_order(svc):
    cid = svc.create_campaign("c", items=pair_rows(3), overlap=1)
    (u,) = users(svc, 1)
    a1 = svc.next_assignment(u, cid)
    a2 = svc.next_assignment(u, cid)
    assert (a1.id, a1.candidate_ids, a1.token) == (a2.id, a2.candidate_ids, a2.token)
    assert a1.mapping == dict(zip(["A", "B"], a1.candidate_ids))
    assert sorted(a1.responses) == ["p0-r0", "p0-r1"]
    assert a1.metadata == {"i": 0}  # for programmatic annotators; the app never shows it


def test_pairs_from_k_responses(svc):
    cid = svc.create_campaign("all", items=pair_rows(2, k=4), overlap=1)
    assert svc.progress(cid)["items"] == 2 * 6
    cid2 = svc.create_campaign("some", items=pair_rows(2, k=4), overlap=1, pairs_per_prompt=2, seed=3)
    assert svc.progress(cid2)["items"] == 4


def test_expired_assignment_is_reassigned_and_late_submit_refused(svc, clock):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=1, assignment_ttl_s=60)
    u1, u2 = users(svc, 2)
    a1 = svc.next_assignment(u1, cid)
    assert svc.next_assignment(u2, cid) is None  # the only slot is held
    clock.advance(61)
    a2 = svc.next_assignment(u2, cid)
    assert a2 is not None and a2.item_id == a1.item_id
    svc.submit_judgment(a2.id, u2, choice="A")
    with pytest.raises(UserError, match="expired"):
        svc.submit_judgment(a1.id, u1, choice="B")
    assert svc.next_assignment(u1, cid) is None  # handed on: u1's copy is marked expired
    assert svc.progress(cid)["judgments"] == 1


def test_late_submit_accepted_while_nobody_else_took_the_item(svc, clock):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=1, assignment_ttl_s=60)
    (u1,) = users(svc, 1)
    a = svc.next_assignment(u1, cid)
    clock.advance(600)
    svc.submit_judgment(a.id, u1, choice="tie")
    assert svc.progress(cid)["judgments"] == 1


def test_repeated_client_token_makes_one_judgment(svc):
    cid = svc.create_campaign("c", items=pair_rows(2), overlap=1)
    (u,) = users(svc, 1)
    a = svc.next_assignment(u, cid)
    j1 = svc.submit_judgment(a.id, u, choice="A", client_token=a.token)
    j2 = svc.submit_judgment(a.id, u, choice="A", client_token=a.token)
    assert j1 == j2
    assert svc.progress(cid)["judgments"] == 1
    with pytest.raises(UserError, match="done"):  # a second judgment without the token is refused
        svc.submit_judgment(a.id, u, choice="B")


def test_skip_is_never_served_again_and_undo_brings_it_back(svc, clock):
    cid = svc.create_campaign("c", items=pair_rows(2), overlap=1)
    (u,) = users(svc, 1)
    a = svc.next_assignment(u, cid)
    svc.skip(a.id, u, reason="unclear prompt")
    svc.skip(a.id, u, reason="double click")  # idempotent
    b = svc.next_assignment(u, cid)
    assert b.item_id != a.item_id
    assert svc.user_progress(u, cid)["skipped"] == 1
    clock.advance(1)
    back = svc.undo_last(u, cid)
    assert back.item_id == a.item_id
    assert svc.next_assignment(u, cid).item_id == a.item_id  # the undone item comes first
    svc.skip(back.id, u)
    svc.submit_judgment(b.id, u, choice="A")
    assert svc.next_assignment(u, cid) is None


def test_skipped_item_goes_to_someone_else(svc):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=1)
    u1, u2 = users(svc, 2)
    a = svc.next_assignment(u1, cid)
    svc.skip(a.id, u1)
    assert svc.next_assignment(u2, cid).item_id == a.item_id
    with pytest.raises(UserError, match="other labelers"):
        svc.undo_last(u1, cid)  # the slot has gone to u2


def test_undo_retracts_the_judgment_and_reopens_the_item(svc):
    cid = svc.create_campaign("c", items=pair_rows(2), overlap=1)
    (u,) = users(svc, 1)
    a = svc.next_assignment(u, cid)
    svc.submit_judgment(a.id, u, choice="A", rationale="first try")
    assert svc.progress(cid)["judgments"] == 1
    back = svc.undo_last(u, cid)
    assert back.id == a.id and back.candidate_ids == a.candidate_ids and back.token != a.token
    assert svc.progress(cid)["judgments"] == 0
    svc.submit_judgment(back.id, u, choice="B", client_token=back.token)
    p = svc.progress(cid)
    assert p["judgments"] == 1
    assert svc.undo_last(u, cid) is not None and svc.undo_last(u, cid) is None  # walks back to nothing
    actions = [r["action"] for r in svc.audit_log(cid)]
    assert actions.count("undo") == 2 and actions.count("judge") == 2


def _filled(svc, cid):
    with svc.engine.connect() as conn:
        return dict(conn.execute(text("SELECT ordinal, filled FROM items WHERE campaign_id = :c AND NOT is_gold"),
                                 {"c": cid}).all())


def test_filled_flag_follows_judgments_and_undo(svc):
    # The flag is what lets the next-item query skip judged items: it must say exactly
    # "judged overlap times", or items are lost (set too early) or slow to find (never set).
    gold = [{"prompt": "g", "responses": ["right", "wrong"], "gold": 0}]
    cid = svc.create_campaign("c", items=pair_rows(2), gold=gold, overlap=2)
    u0, u1, u2 = users(svc, 3)
    a = svc.next_assignment(u0, cid)
    svc.submit_judgment(a.id, u0, choice="A")
    assert not any(_filled(svc, cid).values())  # one of two slots
    b = svc.next_assignment(u1, cid)
    assert b.item_id == a.item_id  # served in campaign order while it has room
    svc.submit_judgment(b.id, u1, choice="B")
    assert sorted(_filled(svc, cid).values()) == [0, 1]
    assert svc.next_assignment(u2, cid).item_id != a.item_id  # a filled item is not served
    svc.undo_last(u1, cid)
    assert not any(_filled(svc, cid).values())  # undo frees the slot
    drain(svc, u0, cid)
    drain(svc, u1, cid)
    assert all(_filled(svc, cid).values())
    with svc.engine.connect() as conn:  # gold items meet every labeler: never filled
        assert conn.execute(text("SELECT filled FROM items WHERE is_gold")).scalar() == 0
    remaining = svc.user_progress(u2, cid)["remaining"]  # counted with the same filter as served
    assert remaining >= 1 and drain(svc, u2, cid) == remaining


def test_other_users_cannot_touch_an_assignment(svc):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=2)
    u1, u2 = users(svc, 2)
    a = svc.next_assignment(u1, cid)
    with pytest.raises(UserError):
        svc.submit_judgment(a.id, u2, choice="A")
    with pytest.raises(UserError):
        svc.skip(a.id, u2)


def test_ranking_campaign(svc):
    cid = svc.create_campaign("r", mode="ranking", items=pair_rows(2, k=3), overlap=1)
    (u,) = users(svc, 1)
    a = svc.next_assignment(u, cid)
    with pytest.raises(UserError, match="pairwise|ranking"):
        svc.submit_judgment(a.id, u, choice="A")
    with pytest.raises(UserError, match="at least two"):
        svc.submit_judgment(a.id, u, ranking=["C"])
    with pytest.raises(UserError, match="twice"):
        svc.submit_judgment(a.id, u, ranking=["C", "C"])
    jid = svc.submit_judgment(a.id, u, ranking=["C", "A"])  # B stays unranked, as the labeler left it
    b = svc.next_assignment(u, cid)
    svc.submit_judgment(b.id, u, ranking=[1, 0])


def test_closed_campaign_serves_no_new_items(svc):
    cid = svc.create_campaign("c", items=pair_rows(3), overlap=1)
    (u,) = users(svc, 1)
    a = svc.next_assignment(u, cid)
    svc.set_campaign_status(cid, "closed")
    assert svc.next_assignment(u, cid).id == a.id  # the open one may be finished
    svc.submit_judgment(a.id, u, choice="A")
    assert svc.next_assignment(u, cid) is None


def test_bad_input_is_a_user_error(svc):
    with pytest.raises(UserError, match="items: row 1: field 'responses'"):
        svc.create_campaign("c", items=[{"prompt": "x", "responses": ["only one"]}])
    with pytest.raises(UserError, match="prompt"):
        svc.create_campaign("c", items=[{"prompt": [{"role": "robot", "content": "x"}], "responses": ["a", "b"]}])
    with pytest.raises(UserError, match="gold"):
        svc.create_campaign("c", items=pair_rows(1), gold=[{"prompt": "g", "responses": ["a", "b"], "gold": 2}])
    svc.create_campaign("c", items=pair_rows(1))
    with pytest.raises(UserError, match="already exists"):
        svc.create_campaign("c", items=pair_rows(1))
    svc.create_user("ann", "pw")
    with pytest.raises(UserError, match="already exists"):
        svc.create_user("ann", "pw")
    with pytest.raises(UserError, match="password"):
        svc.create_user("bob", "")


def test_passwords_are_hashed_and_checked(svc):
    uid = svc.create_user("ann", "s3cret", role="admin")
    assert svc.authenticate("ann", "s3cret").id == uid
    assert svc.authenticate("ann", "S3cret") is None and svc.authenticate("nobody", "s3cret") is None
    with svc.engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE name='ann'")).scalar()
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert svc.create_user("bob", "s3cret") and conn is not None
    with svc.engine.connect() as conn:
        salts = {h.split("$")[4] for (h,) in conn.execute(text("SELECT password_hash FROM users"))}
    assert len(salts) == 2  # a salt per user
    token = svc.create_session(uid)
    assert svc.session_user(token).name == "ann" and svc.session_user(token + "x") is None
    svc.set_user_active(uid, False)
    assert svc.authenticate("ann", "s3cret") is None
    assert svc.session_user(token) is None  # deactivation ends sessions


def test_sessions_expire_and_revoke(svc, clock):
    uid = svc.create_user("ann", None, simulated=True)
    t1, t2 = svc.create_session(uid, ttl_s=60), svc.create_session(uid, ttl_s=600)
    with svc.engine.connect() as conn:
        assert t1 not in str(conn.execute(text("SELECT token_sha256 FROM sessions")).all())
    clock.advance(61)
    assert svc.session_user(t1) is None and svc.session_user(t2).id == uid
    svc.revoke_session(t2)
    assert svc.session_user(t2) is None


def test_durability_setting(tmp_path):
    for durable, level in ((True, 2), (False, 1)):  # PRAGMA synchronous: 2 = FULL, 1 = NORMAL
        svc = LabelService.open(f"sqlite:///{tmp_path / f'{durable}.db'}", durable=durable)
        with svc.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        svc.close()


def test_audit_log_is_append_only(svc):
    svc.create_user("ann", "pw")
    with pytest.raises(Exception, match="append-only"):
        with svc.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET action='x'"))
    with pytest.raises(Exception, match="append-only"):
        with svc.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))


def test_concurrent_labelers_in_threads(svc):
    """20 threads against one SQLite file: no item past its overlap, nobody twice on an item."""
    cid = svc.create_campaign("c", items=pair_rows(12), overlap=3)
    ids = users(svc, 20)
    got: dict[int, list[int]] = {u: [] for u in ids}
    errors = []

    def work(u):
        try:
            while (a := svc.next_assignment(u, cid)) is not None:
                svc.submit_judgment(a.id, u, choice="A", client_token=a.token)
                got[u].append(a.item_id)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(u,)) for u in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(len(v) == len(set(v)) for v in got.values())
    per_item = Counter(i for v in got.values() for i in v)
    assert len(per_item) == 12 and set(per_item.values()) == {3}
    assert svc.progress(cid)["judgments"] == 36


# ---------------------------------------------------------------- migrations


def test_v1_database_opens_and_is_migrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    assert migrations.migrate(engine, target=1) == 1
    with engine.begin() as conn:  # data written by the v1 release
        conn.execute(text(
            "INSERT INTO users (id, name, password_hash, role, simulated, created_at) "
            "VALUES (1, 'old-admin', NULL, 'admin', 1, 0)"))
        conn.execute(text(
            "INSERT INTO campaigns (id, name, mode, overlap, guidelines, assignment_ttl_s, seed, created_at) "
            "VALUES (1, 'old', 'pairwise', 1, '', 60, 0, 0)"))
    assert "active" not in {c["name"] for c in inspect(engine).get_columns("users")}
    engine.dispose()

    svc = LabelService.open(url)
    try:
        assert svc.get_user_by_name("old-admin").active is True
        assert svc.get_campaign(1)["status"] == "open"
        insp = inspect(svc.engine)
        for table in Base.metadata.sorted_tables:  # migrated schema == the models, column for column
            cols = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
            assert cols == {c.name: c.nullable for c in table.columns}, table.name
        with svc.engine.connect() as conn:
            versions = [v for (v,) in conn.execute(text("SELECT version FROM schema_version ORDER BY version"))]
        assert versions == list(range(1, migrations.LATEST + 1))
    finally:
        svc.close()


def test_v3_database_gets_filled_from_its_judgments(tmp_path):
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    engine = create_engine(url)
    assert migrations.migrate(engine, target=3) == 3
    with engine.begin() as conn:  # a v3 campaign (overlap 2) part way through
        for sql in (
            "INSERT INTO users (id, name, role, simulated, created_at, active) VALUES (1, 'a', 'labeler', 1, 0, 1), "
            "(2, 'b', 'labeler', 1, 0, 1), (3, 'c', 'labeler', 1, 0, 1)",
            "INSERT INTO campaigns (id, name, mode, overlap, guidelines, assignment_ttl_s, seed, created_at, status) "
            "VALUES (1, 'old', 'pairwise', 2, '', 60, 0, 0, 'open')",
            "INSERT INTO prompts (id, campaign_id, prompt_json, metadata_json) VALUES (1, 1, '\"p\"', '{}')",
            "INSERT INTO candidates (id, prompt_id, idx, text, metadata_json) VALUES (1, 1, 0, 'x', '{}'), "
            "(2, 1, 1, 'y', '{}')",
            "INSERT INTO items (id, campaign_id, prompt_id, candidate_ids_json, ordinal, is_gold, gold_json) VALUES "
            "(1, 1, 1, '[1, 2]', 0, 0, NULL), (2, 1, 1, '[1, 2]', 1, 0, NULL), "
            "(3, 1, 1, '[1, 2]', 2, 1, '{\"winner\": 1}')",
        ):
            conn.execute(text(sql))
        # item 1: judged twice (full); item 2: once, plus a skip; gold item 3: twice
        for i, (item, user, status) in enumerate([(1, 1, "done"), (1, 2, "done"), (2, 1, "done"),
                                                   (2, 2, "skipped"), (3, 1, "done"), (3, 2, "done")]):
            conn.execute(text(
                "INSERT INTO assignments (id, item_id, campaign_id, user_id, status, shown_order_json, token, "
                "created_at, activated_at, expires_at) VALUES (:i, :item, 1, :u, :s, '[1, 2]', :t, 0, 0, 60)"),
                {"i": i + 1, "item": item, "u": user, "s": status, "t": f"t{i}"})
    engine.dispose()

    svc = LabelService.open(url, clock=lambda: 10.0)
    try:
        with svc.engine.connect() as conn:
            assert dict(conn.execute(text("SELECT id, filled FROM items")).all()) == {1: 1, 2: 0, 3: 0}
        assert svc.next_assignment(3, 1).item_id == 2  # item 1 is full; item 2 has a slot left
    finally:
        svc.close()


def test_newer_database_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    LabelService.open(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 0, 'from the future')"))
    engine.dispose()
    with pytest.raises(UserError, match="v99.*newer"):
        LabelService.open(url)


# ---------------------------------------------------------------- quality


def test_krippendorff_alpha_on_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal data, 4 coders.
    data = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    units: dict = {}
    for rater, values in data.items():
        for u, v in enumerate(values):
            if v is not None:
                units.setdefault(u, {})[rater] = v
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_agreement_by_hand(svc):
    # 3 items, 2 labelers: agree, disagree, agree.
    # pairwise agreement 2/3. Coincidences o_xx=2, o_xy=o_yx=1, o_yy=2 in candidate labels...
    # computed per item below by hand: alpha = 1 - (n-1) * D_o / D_e = 1 - 5 * 2 / 18 = 4/9.
    units = {1: {"a": "x", "b": "x"}, 2: {"a": "x", "b": "y"}, 3: {"a": "y", "b": "y"}}
    overall, per = pairwise_agreement(units)
    assert overall == pytest.approx(2 / 3) and per["a"]["agreement"] == pytest.approx(2 / 3)
    assert krippendorff_alpha_nominal(units) == pytest.approx(4 / 9)
    assert krippendorff_alpha_nominal({1: {"a": "x", "b": "x"}}) is None  # one category: undefined

    # The same through the store: labels are in candidate terms, whatever order was shown.
    cid = svc.create_campaign("c", items=pair_rows(3), overlap=2)
    a, b = users(svc, 2)
    want = {0: ("r0", "r0"), 1: ("r0", "r1"), 2: ("r1", "r1")}
    for uid, k in ((a, 0), (b, 1)):
        while (asg := svc.next_assignment(uid, cid)) is not None:
            i = int(asg.prompt[1:])
            target = f"p{i}-{want[i][k]}"
            svc.submit_judgment(asg.id, uid, choice="A" if asg.responses[0] == target else "B")
    q = svc.agreement(cid)
    assert q["pairwise_agreement"] == pytest.approx(2 / 3)
    assert q["krippendorff_alpha"] == pytest.approx(4 / 9)
    pb = q["position_bias"]
    assert pb["A"] + pb["B"] == 6 and 0 <= pb["a_rate"] <= 1


def test_gold_accuracy_and_quality_filter(svc, tmp_path):
    gold = [{"prompt": "g", "responses": ["right", "wrong"], "gold": 0}]
    cid = svc.create_campaign("c", items=pair_rows(2), gold=gold, overlap=2)
    good, bad = users(svc, 2)
    for uid, pick in ((good, "right"), (bad, "wrong")):
        while (asg := svc.next_assignment(uid, cid)) is not None:
            target = pick if asg.prompt == "g" else asg.responses[0]
            svc.submit_judgment(asg.id, uid, choice="A" if asg.responses[0] == target else "B")
    q = svc.agreement(cid)
    assert q["labelers"]["u0"]["gold_accuracy"] == 1.0 and q["labelers"]["u1"]["gold_accuracy"] == 0.0
    assert q["gold_accuracy"] == 0.5
    assert svc.progress(cid)["items"] == 2  # gold is not counted as work
    n_all = svc.export(cid, tmp_path / "all.jsonl")
    n_good = svc.export(cid, tmp_path / "good.jsonl", min_gold_accuracy=0.5)
    assert (n_all, n_good) == (4, 2)
    assert {r["labeler"] for r in read_rows(tmp_path / "good.jsonl")} == {"u0"}


# ---------------------------------------------------------------- export


def _labelled_pairwise(svc):
    rows = [{"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}],
             "responses": [{"text": f"good{i}", "policy": "sft", "checkpoint": "runs/x/sft"},
                           {"text": f"bad{i}", "policy": "base", "checkpoint": "runs/x/base"}],
             "metadata": {"family": "f", "id": i}} for i in range(3)]
    cid = svc.create_campaign("c", items=rows, overlap=3)
    u = [svc.create_user("u0", "pw"), svc.create_user("u1", "pw"), svc.create_user("sim", None, simulated=True)]
    votes = {0: ["good", "good", "bad"], 1: ["tie", "tie", "good"], 2: ["good", "bad", "both_bad"]}
    for k, uid in enumerate(u):
        while (asg := svc.next_assignment(uid, cid)) is not None:
            i = asg.item_id - 1
            v = votes[i][k]
            choice = v if v in ("tie", "both_bad") else ("A" if asg.responses[0].startswith(v) else "B")
            svc.submit_judgment(asg.id, uid, choice=choice, rationale=f"because {k}")
    return cid


def test_export_all_is_the_reward_stage_format(svc, tmp_path):
    cid = _labelled_pairwise(svc)
    n = svc.export(cid, tmp_path / "all.jsonl")
    rows = read_rows(tmp_path / "all.jsonl")
    assert n == len(rows) == 6  # 9 votes minus 2 ties and 1 both_bad
    assert validate_rows(rows, None, "export") == "preference"
    r = rows[0]
    assert r["prompt"][1] == {"role": "user", "content": "q0"} and r["chosen"] == "good0" and r["rejected"] == "bad0"
    assert r["label"] == "preference" and r["labeler"] == "u0" and r["metadata"] == {"family": "f", "id": 0}
    assert r["chosen_policy"] == "sft" and r["rejected_checkpoint"] == "runs/x/base" and r["chosen_position"] in "AB"
    assert r["rationale"] == "because 0"

    with_ties = read_rows(tmp_path / "t.jsonl") if svc.export(cid, tmp_path / "t.jsonl", include_ties=True) else []
    assert Counter(r["label"] for r in with_ties) == {"preference": 6, "tie": 2, "both_bad": 1}
    assert svc.export(cid, tmp_path / "human.jsonl", include_simulated=False) == 4


def test_export_majority(svc, tmp_path):
    cid = _labelled_pairwise(svc)
    svc.export(cid, tmp_path / "maj.jsonl", aggregation="majority", include_ties=True)
    rows = read_rows(tmp_path / "maj.jsonl")
    validate_rows(rows, "preference", "export")
    # item 0: good 2-1; item 1: tie 2-1; item 2: a three-way draw -> no row
    assert [(r["item_id"], r["label"]) for r in rows] == [(1, "preference"), (2, "tie")]
    assert rows[0]["chosen"] == "good0" and rows[0]["agreement"] == pytest.approx(2 / 3)
    assert rows[0]["labelers"] == ["sim", "u0", "u1"] and rows[0]["votes"] == 3


def test_export_ranking_all_and_majority_in_every_format(svc, tmp_path):
    cid = svc.create_campaign("r", mode="ranking", items=pair_rows(2, k=3), overlap=2)
    a, b = users(svc, 2)
    for uid, order in ((a, ["r2", "r0", "r1"]), (b, ["r2", "r1"])):
        while (asg := svc.next_assignment(uid, cid)) is not None:
            pos = [next(i for i, t in enumerate(asg.responses) if t.endswith(o)) for o in order]
            svc.submit_judgment(asg.id, uid, ranking=pos)
    for target in ("all.jsonl", "all.parquet", "all_ds"):
        assert svc.export(cid, tmp_path / target) == 4
        rows = read_rows(tmp_path / target)
        assert validate_rows(rows, None, target) == "ranking"
        assert [r["ranking"] for r in rows[:2]] == [[2, 0, 1], [2, 1]]  # r0 left out: unranked
    with pytest.raises(UserError, match="suffix"):
        svc.export(cid, tmp_path / "x.csv")
    svc.export(cid, tmp_path / "maj.jsonl", aggregation="majority")
    rows = read_rows(tmp_path / "maj.jsonl")
    assert rows[0]["ranking"][0] == 2 and rows[0]["labelers"] == ["u0", "u1"]
    assert rows[0]["agreement"] == pytest.approx(2 / 3)  # they agree on (2,0) and (2,1), not on (0,1)


def test_columnar_export_with_empty_metadata(svc, tmp_path):
    cid = svc.create_campaign("c", items=[{"prompt": "p", "responses": ["a", "b"]},
                                          {"prompt": "q", "responses": ["c", "d"], "metadata": {"k": 1}}])
    (u,) = users(svc, 1)
    drain(svc, u, cid)
    for target in ("x.parquet", "x_ds"):
        assert svc.export(cid, tmp_path / target) == 2
        assert [r["metadata"] for r in read_rows(tmp_path / target)] in ([None, {"k": 1}], [{"k": None}, {"k": 1}])


def test_export_of_nothing_is_a_user_error(svc, tmp_path):
    cid = svc.create_campaign("c", items=pair_rows(1))
    with pytest.raises(UserError, match="nothing to export"):
        svc.export(cid, tmp_path / "x.jsonl")
    assert json.loads(json.dumps(svc.progress(cid)))["judgments"] == 0
