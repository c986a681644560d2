"""What a campaign lead relies on in the store: nobody holds an item they did not ask for,
held items can be released, a partial ranking stays partial, errors name the admin's own file
with 1-based lines, and the audit log reads as names, not ids."""

from __future__ import annotations

import json

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from alignment.errors import UserError
from tests.ui.conftest import pair_rows
from ui import admin_views, plots
from ui.app import ranking_note
from ui.candidates import read_candidates

matplotlib.use("Agg")


def test_looking_holds_nothing_and_a_held_item_can_be_released(svc):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=1)
    admin = svc.create_user("lead", None, role="admin", simulated=True)
    lab, other = (svc.create_user(n, None, simulated=True) for n in ("lab", "other"))
    # Looking (the page of someone who has not asked to label) takes nothing.
    assert svc.current_assignment(admin, cid) is None
    assert svc.held_assignments(cid) == [] and svc.progress(cid)["active_assignments"] == 0
    a = svc.next_assignment(lab, cid)
    assert svc.current_assignment(lab, cid).id == a.id  # what one holds, one sees again
    assert svc.next_assignment(other, cid) is None  # overlap 1: held by lab
    (held,) = svc.held_assignments(cid)
    assert (held["assignment"], held["user"], held["campaign"], held["item"]) == (a.id, "lab", "c", a.item_id)
    svc.release_assignment(a.id, actor_id=admin)
    assert svc.held_assignments(cid) == []
    assert svc.next_assignment(other, cid).item_id == a.item_id  # handed on at once, not after 30 min
    with pytest.raises(UserError, match="released"):
        svc.submit_judgment(a.id, lab, choice="A")
    with pytest.raises(UserError, match="only an item being held"):
        svc.release_assignment(a.id)
    (entry,) = [e for e in svc.audit_log(cid) if e["action"] == "release"]
    assert entry["user"] == "lead" and entry["detail"]["holder"] == "lab"


def test_a_ranking_that_leaves_one_out_keeps_it_unranked(svc, tmp_path):
    cid = svc.create_campaign("r", mode="ranking", items=pair_rows(1, k=3), overlap=1)
    (u,) = [svc.create_user("u", None, simulated=True)]
    a = svc.next_assignment(u, cid)
    svc.submit_judgment(a.id, u, ranking=["C", "A"])
    svc.export(cid, tmp_path / "r.jsonl")
    (row,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(row["ranking"]) == 2  # B is not exported as ranked last
    assert [row["responses"][i] for i in row["ranking"]] == [a.responses[2], a.responses[0]]
    assert ranking_note(["C", "A"], "ranking:3") == "C > A; B unranked"
    assert ranking_note(["B", "A"], "ranking:2") == "B > A"


def test_a_bad_upload_is_named_by_its_own_name_with_1_based_lines(tmp_path):
    upload = tmp_path / "gradio-cache" / "0a1b2c"
    upload.mkdir(parents=True)
    path = upload / "candidates.jsonl"
    good = json.dumps(pair_rows(1)[0])
    path.write_text(f"{good}\n\n{good}\n" + json.dumps({"prompt": "x", "responses": "no"}) + "\n")
    with pytest.raises(UserError) as err:
        read_candidates(path, name="candidates.jsonl")
    assert str(err.value).startswith("candidates.jsonl: line 4: field 'responses'")
    assert "gradio-cache" not in str(err.value)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(UserError, match=r"^candidates.jsonl: line 2: invalid JSON"):
        read_candidates(path, name="candidates.jsonl")


def test_gold_rows_from_their_own_file_are_named_by_it(svc):
    bad_gold = [{"prompt": "g", "responses": ["a", "b"], "gold": 1}, {"prompt": "h", "responses": ["a", "b"], "gold": 5}]
    with pytest.raises(UserError, match=r"^gold.jsonl: row 2: field 'gold'"):
        svc.create_campaign("c", items=pair_rows(1), gold=bad_gold, sources=("cands.jsonl", "gold.jsonl"))


def test_the_audit_log_shows_every_entry_with_names(svc):
    admin = svc.create_user("lead", "pw-lead", role="admin")
    svc.create_session(admin)
    svc.create_user("bob", None, simulated=True, actor_id=admin)
    cid = svc.create_campaign("round1", items=pair_rows(1), created_by=admin)
    entries = svc.audit_log()
    assert [e["action"] for e in entries][:3] == ["create_campaign", "create_user", "login"]
    rows = admin_views.audit_rows(entries)
    assert rows[0][1:4] == ["lead", "create campaign", "round1"]
    assert rows[1][1:4] == ["lead", "create user", "–"] and rows[1][4] == "user: bob · role: labeler · simulated: True"
    assert rows[2][1:4] == ["lead", "login", "–"]
    assert all("{" not in r[4] and "'" not in r[4] for r in rows)
    assert [e["action"] for e in svc.audit_log(cid)] == ["create_campaign"]


def test_dashboard_cards_show_alpha_and_bias_z_escaped(svc):
    cid = svc.create_campaign("<b>camp</b>", items=pair_rows(4), overlap=2)
    a, b = (svc.create_user(n, None, simulated=True) for n in ("<img src=x onerror=alert(1)>", "b"))
    for uid in (a, b):
        while (asg := svc.next_assignment(uid, cid)) is not None:
            svc.submit_judgment(asg.id, uid, choice="A")
    progress, quality = svc.progress(cid), svc.agreement(cid)
    html = admin_views.summary_cards(progress, quality)
    assert "Krippendorff" in html and "z = 2.8" in html and "100%" in html  # 8 of 8 votes for A: z = 8/sqrt(8)
    assert "<img" not in html
    rows = admin_views.labeler_rows(progress, quality)
    assert rows[0][0] == "<img src=x onerror=alert(1)>" and rows[0][10] == 2.0  # 4 of 4: z = 4/sqrt(4)


def test_plot_legend_covers_no_bar():
    names = [f"lab{i}" for i in range(4)]
    progress = {"campaign": "c", "judgments": 10, "fraction_done": 0.5,
                "labelers": {n: {"judgments": 3, "median_s": 4.0} for n in names}}
    quality = {"mode": "pairwise", "position_bias": {},
               "labelers": {n: {"agreement": 0.95, "gold_accuracy": 0.9, "a_rate": 0.5} for n in names}}
    fig = plots.quality_figure(progress, quality)
    canvas = FigureCanvasAgg(fig)  # the app's figure is closed (no pyplot state): draw it on its own canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        for bar in ax.patches:
            assert not box.overlaps(bar.get_window_extent(renderer)), "the legend hides a bar"


def _vote(svc, uid, cid, better: str, rationale: str = "") -> None:
    """`uid` judges their next item, choosing the response whose text ends with `better`."""
    a = svc.next_assignment(uid, cid)
    pos = next(i for i, t in enumerate(a.responses) if t.endswith(better))
    svc.submit_judgment(a.id, uid, choice="AB"[pos], rationale=rationale)


def test_disagreement_is_adjudicated_sent_back_and_exported(svc, tmp_path):
    cid = svc.create_campaign("c", items=pair_rows(1), overlap=2,
                              gold=[{"prompt": "g", "responses": ["right", "wrong"], "gold": 0}])
    lead = svc.create_user("lead", None, role="admin", simulated=True)
    a, b, c = (svc.create_user(n, None, simulated=True) for n in ("a", "b", "c"))
    for uid, better, why in ((a, "r0", "r0 is right"), (b, "r1", "r1 is shorter")):
        _vote(svc, uid, cid, better, why)  # the real item
        g = svc.next_assignment(uid, cid)  # the gold item: a right, b wrong
        svc.submit_judgment(g.id, uid, choice="AB"[g.responses.index("right" if uid == a else "wrong")])
    cases = svc.review_items(cid)
    assert [(x["reason"], x["is_gold"]) for x in cases] == [("disagreement", False), ("failed gold", True)]
    votes = {v["user"]: v for v in cases[0]["votes"]}
    assert votes["a"]["answer"] == "1 better" and votes["a"]["rationale"] == "r0 is right"
    assert votes["b"]["answer"] == "2 better" and votes["b"]["rationale"] == "r1 is shorter"
    assert cases[1]["expected"] == "1 better" and {v["user"]: v["correct"] for v in cases[1]["votes"]} == {"a": 1.0, "b": 0.0}

    item = cases[0]["item_id"]
    # Sent back: one more labeler may now judge it.
    assert svc.send_back(item, actor_id=lead) == 3
    nxt = svc.next_assignment(c, cid)
    assert nxt.item_id == item
    svc.skip(nxt.id, c)
    # Adjudicated: the lead's label is its own kind, leaves agreement alone, wins the majority export.
    before = svc.agreement(cid)
    with pytest.raises(UserError, match="gold"):
        svc.adjudicate(cases[1]["item_id"], lead, 0)
    svc.adjudicate(item, lead, 1, rationale="first try")
    svc.adjudicate(item, lead, 0, rationale="r0 follows the instruction")
    assert svc.agreement(cid) == before
    (case,) = [x for x in svc.review_items(cid) if x["item_id"] == item]
    assert case["adjudication"] == {"user": "lead", "rationale": "r0 follows the instruction", "answer": "1 better"}
    assert svc.progress(cid)["adjudicated"] == 1
    for fmt in ("jsonl", "parquet"):
        assert svc.export(cid, tmp_path / f"maj.{fmt}", aggregation="majority") == 1
    rows = [json.loads(x) for x in (tmp_path / "maj.jsonl").read_text().splitlines()]
    assert [(r["chosen"], r["judgment_kind"], r["labeler"], r["labelers"]) for r in rows] == [
        ("p0-r0", "adjudication", "lead", ["a", "b"])]
    assert svc.export(cid, tmp_path / "all.jsonl") == 3
    rows = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sorted(r["judgment_kind"] for r in rows) == ["adjudication", "label", "label"]
    assert svc.export(cid, tmp_path / "gold.jsonl", include_gold=True) == 5
    rows = [json.loads(x) for x in (tmp_path / "gold.jsonl").read_text().splitlines()]
    assert sorted(r["is_gold"] for r in rows) == [False, False, False, True, True]
    actions = [e["action"] for e in svc.audit_log(cid)]
    assert actions.count("adjudicate") == 2 and "send_back" in actions


def test_a_restricted_campaign_and_a_gold_pause(svc):
    cid = svc.create_campaign("c", items=pair_rows(6), overlap=1,
                              gold=[{"prompt": f"g{i}", "responses": ["right", "wrong"], "gold": 0} for i in range(3)],
                              seed=1)
    ann, bob = (svc.create_user(n, None, simulated=True) for n in ("ann", "bob"))
    lead = svc.create_user("lead", None, role="admin", simulated=True)
    svc.set_campaign_labelers(cid, ["ann"], actor_id=lead)
    assert svc.campaign_labelers(cid) == ["ann"]
    assert [c["name"] for c in svc.campaigns_for(bob)] == [] and [c["name"] for c in svc.campaigns_for(ann)] == ["c"]
    assert svc.next_assignment(bob, cid) is None and "restricted" in svc.pause_reason(bob, cid)
    assert [c["name"] for c in svc.campaigns_for(lead)] == ["c"]  # an admin may always choose to label
    with pytest.raises(UserError, match="no user named 'nobody'"):
        svc.set_campaign_labelers(cid, ["ann", "nobody"])
    svc.set_campaign_labelers(cid, [])
    assert svc.next_assignment(bob, cid) is not None

    svc.set_min_gold_accuracy(cid, 0.8, actor_id=lead)
    while (a := svc.next_assignment(ann, cid)) is not None:  # ann fails every gold item
        svc.submit_judgment(a.id, ann, choice="AB"[a.responses.index("wrong")] if "wrong" in a.responses else "A")
    assert "paused" in svc.pause_reason(ann, cid) and svc.paused_labelers(cid) == {"ann": "paused (gold 0%)"}
    assert svc.progress(cid)["judgments"] < 6  # items were left when she was stopped
    svc.set_min_gold_accuracy(cid, None)
    assert svc.pause_reason(ann, cid) is None and svc.next_assignment(ann, cid) is not None
