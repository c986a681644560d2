"""AI feedback: the logprob judge and its order swap, the AI annotator in the label store,
critique-and-revise, the v6 store migration, and the `rlhf label critique / judge` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignment.data.files import read_rows
from reward.ai_judge import LogprobJudge, combine, judge_pairs, verdict_token_ids
from reward.ai_labeling import ai_label_campaign
from reward.critique import critique_and_revise, store_revisions
from reward.principles import Principle, load_principles
from alignment.recipe.labels import JUDGE_TEMPLATE, AIJudgeConfig
from ui.service import LabelService

PRINCIPLES = [Principle("correct", "Prefer the correct response.", "Is it correct?", "Make it correct."),
              Principle("brief", "Prefer the brief response.", "Is it brief?", "Make it brief.")]


class FakeJudge:
    """P(first better) from a rule, so each test controls the verdict."""

    def __init__(self, rule):
        self.rule, self.calls = rule, []

    def prob_first_better(self, prompts, firsts, seconds):
        self.calls.append(len(prompts))
        return np.array([self.rule(p, a, b) for p, a, b in zip(prompts, firsts, seconds)])

    def profile(self):
        return {"judge": "fake", "template": "T", "principles": [p.as_dict() for p in PRINCIPLES]}


def prefers_position_a(p, a, b):
    return 0.9


def prefers_good(p, a, b):
    return 0.8 if "good" in a else 0.2


def test_an_order_inconsistent_verdict_is_a_tie():
    judge = FakeJudge(prefers_position_a)
    (v,) = judge_pairs(judge, ["q"], ["x"], ["y"], swap=True)
    assert v.choice == "tie" and v.p_orders == (0.9, pytest.approx(0.1)) and v.p_first == pytest.approx(0.5)
    assert judge.calls == [2]  # both orders in one batch
    (v,) = judge_pairs(judge, ["q"], ["x"], ["y"], swap=False)
    assert v.choice == "first" and v.confidence == pytest.approx(0.8)
    (v,) = judge_pairs(FakeJudge(prefers_good), ["q"], ["bad"], ["good"], swap=True)
    assert v.choice == "second" and v.p_first == pytest.approx(0.2) and v.confidence == pytest.approx(0.6)
    assert combine((0.6, 0.45)).choice == "tie" and combine((0.6, 0.55)).choice == "first"


def _campaign(svc, n=4, overlap=1, gold=()):
    rows = [{"prompt": f"q{i}", "responses": [f"good {i}", f"bad {i}"], "metadata": {"id": i}} for i in range(n)]
    return svc.create_campaign("c", overlap=overlap, items=rows, gold=list(gold))


def test_the_ai_annotator_labels_through_the_store_and_can_be_left_out_of_the_export(tmp_path):
    svc = LabelService.open(f"sqlite:///{tmp_path / 'l.db'}")
    cid = _campaign(svc, n=5, overlap=3, gold=[{"prompt": "g", "responses": ["good g", "bad g"], "gold": 0}])
    stats = ai_label_campaign(svc, cid, FakeJudge(prefers_good), AIJudgeConfig(name="judge", batch_size=4),
                              progress=False)
    # the display order is shuffled per assignment, so the A/B split varies; a tie never happens
    assert stats["judgments"] == 6 and set(stats["choices"]) <= {"A", "B"}
    assert sum(stats["choices"].values()) == 6
    user = svc.get_user_by_name("judge")
    assert user.kind == "ai" and user.simulated and svc.user_profile("judge")["judge"] == "fake"
    assert svc.user_profile("judge")["principles"][0]["name"] == "correct"
    # a person (another kind) judges the same items: two agree with the AI, the rest not
    human = svc.create_user("ann", "pw")
    sim = svc.ensure_user("sim", simulated=True)
    for uid, good_wins in ((human, [True, True, False, False, False]), (sim, [True] * 5)):
        k = 0
        while (a := svc.next_assignment(uid, cid)) is not None:
            good = next(i for i, r in enumerate(a.responses) if r.startswith("good"))
            is_gold = a.prompt == "g"
            win = good if (is_gold or good_wins[k]) else 1 - good
            svc.submit_judgment(a.id, uid, choice="AB"[win], client_token=a.token)
            k += 0 if is_gold else 1
    ai = svc.agreement(cid)["ai"]["judge"]
    assert ai["gold_accuracy"] == 1.0 and ai["gold_judgments"] == 1
    assert ai["pairs_human"] == 6 and ai["agreement_human"] == pytest.approx(3 / 6)  # 2 items + gold
    assert ai["pairs_simulated"] == 6 and ai["agreement_simulated"] == 1.0 and ai["mean_confidence"] == pytest.approx(0.6)
    from ui import admin_views  # the admin's dashboard shows it

    quality = svc.agreement(cid)
    assert "AI judge" in admin_views.summary_cards(svc.progress(cid), quality)
    assert "agrees with humans 50% (6 pairs), simulated 100% (6), gold 100% (1)" in admin_views.ai_cards(quality)
    assert admin_views.ai_rows(quality)[0][:6] == ["judge", 6, 0.5, 6, 1.0, 6]

    svc.export(cid, tmp_path / "all.jsonl")
    rows = read_rows(tmp_path / "all.jsonl")
    ai_rows = [r for r in rows if r["labeler"] == "judge"]
    assert len(rows) == 15 and len(ai_rows) == 5 and {r["labeler_kind"] for r in ai_rows} == {"ai"}
    assert all(r["chosen"].startswith("good") and r["confidence"] == pytest.approx(0.6) for r in ai_rows)
    assert "P(A better)" in ai_rows[0]["rationale"]
    svc.export(cid, tmp_path / "no-ai.jsonl", include_ai=False)
    kept = read_rows(tmp_path / "no-ai.jsonl")
    assert len(kept) == len(rows) - 5 and {r["labeler_kind"] for r in kept} == {"human", "simulated"}
    svc.export(cid, tmp_path / "no-sim.jsonl", include_simulated=False)
    assert {r["labeler_kind"] for r in read_rows(tmp_path / "no-sim.jsonl")} == {"human", "ai"}
    svc.close()


def test_a_position_biased_ai_judge_answers_tie_in_the_store(tmp_path):
    svc = LabelService.open(f"sqlite:///{tmp_path / 'l.db'}")
    cid = _campaign(svc, n=3)
    stats = ai_label_campaign(svc, cid, FakeJudge(prefers_position_a), AIJudgeConfig(name="biased"), progress=False)
    assert stats["choices"] == {"tie": 3}
    assert svc.agreement(cid)["ai"]["biased"]["ties"] == 3
    with pytest.raises(Exception, match="nothing to export"):
        svc.export(cid, tmp_path / "x.jsonl")  # ties are no preferences
    assert svc.export(cid, tmp_path / "t.jsonl", include_ties=True) == 3
    svc.close()


def test_a_tiny_real_judge_scores_both_orders_in_one_padded_batch(tmp_path):
    from tests.alignment.eval_helpers import tiny_policy
    from alignment.models import load_policy, load_tokenizer

    path = tiny_policy(tmp_path / "judge", sharpen=4.0)
    judge = LogprobJudge(load_policy(path), load_tokenizer(path), JUDGE_TEMPLATE, PRINCIPLES)
    prompts, xs, ys = ["Reverse the words: cat dog sun", "q", "Give only the first word"], \
        ["sun dog cat", "a much longer answer than the other one", "red"], ["cat dog sun", "b", "box"]
    together = judge.prob_first_better(prompts + prompts, xs + ys, ys + xs)
    alone = np.array([judge.prob_first_better([p], [x], [y])[0] for p, x, y in zip(prompts + prompts, xs + ys, ys + xs)])
    np.testing.assert_allclose(together, alone, atol=1e-4)  # left padding does not change a verdict
    assert ((together > 0) & (together < 1)).all() and len(set(np.round(together, 6))) > 1
    verdicts = judge_pairs(judge, prompts, xs, ys, swap=True, batch_size=2)
    back = judge_pairs(judge, prompts, ys, xs, swap=True, batch_size=2)
    for v, w in zip(verdicts, back):  # swapping the pair mirrors the verdict exactly
        assert v.p_first == pytest.approx(1 - w.p_first, abs=1e-5)
        assert {v.choice, w.choice} in ({"first", "second"}, {"tie"})
    shown = judge.render("{x}", "a {b}", "c")  # braces in a request or a response are shown as written
    assert "{x}" in shown and "Response A:\na {b}\n" in shown and "Response B:\nc\n" in shown
    assert verdict_token_ids(judge.tokenizer)["A"] != verdict_token_ids(judge.tokenizer)["B"]


def test_critique_drops_empty_and_identical_revisions_and_counts_them(tmp_path):
    def generate(convs, max_new_tokens):
        out = []
        for c in convs:
            answer, asked = c[1]["content"], c[-1]["content"]
            if asked.startswith("Is it"):
                out.append(f"critique of {answer}")
            elif answer == "empty me":
                out.append("   ")
            elif answer == "keep me":
                out.append("keep  me")  # the same text up to spacing
            else:
                out.append(answer + " (revised)")
        return out

    prompts = ["p1", "p2", "p3"]
    kept, counts = critique_and_revise(generate, prompts, ["empty me", "keep me", "fix me"], PRINCIPLES, rounds=2)
    assert [k.revised for k in kept] == ["fix me (revised) (revised)"]
    assert counts["empty revision dropped"] == 2 and counts["revision identical to its original dropped"] == 2
    assert counts["items without a changed revision"] == 2
    assert kept[0].critiques[0].startswith("[") and "critique of fix me" in kept[0].critiques[0]

    svc = LabelService.open(f"sqlite:///{tmp_path / 'l.db'}")
    cid = store_revisions(svc, kept, "crit", "ai-critique", {"method": "critique-and-revise"})
    svc.export(cid, tmp_path / "c.jsonl")
    (row,) = read_rows(tmp_path / "c.jsonl")
    assert row["chosen"] == "fix me (revised) (revised)" and row["rejected"] == "fix me"
    assert row["labeler_kind"] == "ai" and "critique of fix me" in row["rationale"]
    assert svc.export(cid, tmp_path / "n.jsonl", include_ai=True) == 1
    with pytest.raises(Exception, match="nothing to export"):
        svc.export(cid, tmp_path / "n.jsonl", include_ai=False)
    svc.close()


def test_principles_file_is_checked(tmp_path):
    assert [p.name for p in load_principles("configs/principles/helpful_harmless.yaml")][:2] == ["correct", "follows_instructions"]
    bad = tmp_path / "p.yaml"
    bad.write_text("- {name: a, description: d, critique: c}\n")
    with pytest.raises(Exception, match="principle 1: field 'revision'"):
        load_principles(bad)


def test_a_v5_store_gets_user_kinds(tmp_path):
    from sqlalchemy import create_engine, text

    from ui import migrations

    url = f"sqlite:///{tmp_path / 'v5.db'}"
    engine = create_engine(url)
    assert migrations.migrate(engine, target=5) == 5
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, simulated, created_at, active) VALUES "
                          "(1, 'sim', 'labeler', 1, 0, 1), (2, 'ann', 'labeler', 0, 0, 1)"))
    engine.dispose()
    svc = LabelService.open(url)
    assert svc.get_user_by_name("sim").kind == "simulated" and svc.get_user_by_name("ann").kind == "human"
    with pytest.raises(Exception, match="exists as a simulated labeler"):
        svc.ensure_user("sim", kind="ai")
    svc.close()


def rlhf(*args):
    return subprocess.run([sys.executable, "-m", "alignment.cli", *args], capture_output=True, text=True, timeout=300)


def test_label_critique_and_judge_and_the_ai_labels_stage_run_end_to_end(tmp_path):
    from tests.alignment.eval_helpers import tiny_policy

    policy = tiny_policy(tmp_path / "policy", sharpen=4.0)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Reverse the words: cat dog sun",
                                                                        "Give only the first word: red box cup", "hi"]))
    db = f"sqlite:///{tmp_path / 'labels.db'}"
    common = [f"output_dir={tmp_path / 'run'}", f"model.name_or_path={policy}", f"data.sources=[{{path: {prompts}}}]",
              "data.eval_sets=[]", "eval.prompts=[]", f"labels.db={db}"]
    r = rlhf("label", "critique", "configs/quickstart.yaml", *common, f"labels.critique.prompts_file={prompts}",
             "labels.critique.dtype=float32", "labels.critique.temperature=1.0", "labels.critique.max_new_tokens=8",
             "labels.critique.critique_max_new_tokens=8")
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path / "run" / "labels" / "critique.jsonl")
    assert rows and {row["labeler"] for row in rows} == {"ai-critique"}
    metrics = json.loads((tmp_path / "run" / "labels" / "critique_metrics.json").read_text())
    assert metrics["pairs"] == len(rows) and metrics["prompts"] == 3

    svc = LabelService.open(db)
    svc.create_campaign("people", items=[{"prompt": "q", "responses": ["sun dog cat", "cat"]}] * 1
                        + [{"prompt": "r", "responses": ["red", "box"]}])
    svc.close()
    r = rlhf("label", "judge", "configs/quickstart.yaml", *common, "--campaign", "people", "labels.ai.dtype=float32")
    assert r.returncode == 0, r.stderr
    assert "2 AI judgments in 'people'" in r.stdout

    # the labels stage with labels.source=ai, on candidates already sampled
    from alignment.recipe import load_recipe
    from reward.labeling import run_labels_stage

    recipe = load_recipe("configs/quickstart.yaml", common + ["labels.source=ai", "labels.ai.dtype=float32", "reward.ties=half",
                                                               f"labels.db=sqlite:///{tmp_path / 'stage.db'}"])
    samples = tmp_path / "run" / "samples"
    samples.mkdir(parents=True)
    (samples / "candidates.jsonl").write_text("".join(json.dumps(
        {"prompt": f"q{i}", "responses": ["a b", "c d", "e"]}) + "\n" for i in range(3)))
    out = run_labels_stage(recipe)
    metrics = json.loads((tmp_path / "run" / "labels" / "metrics.json").read_text())
    assert metrics["ai"]["judgments"] == metrics["progress"]["items"] == 9  # 3 prompts x 3 pairs
    assert metrics["agreement"]["ai"]["ai-judge"]["judgments"] == 9
    assert [row["labeler_kind"] for row in read_rows(out)] == ["ai"] * 9
