"""`rlhf label ...` end to end in process (serve is covered by the live-server tests)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import types

import pytest

from alignment.cli import main as rlhf
from alignment.data.files import read_rows
from alignment.data.rows import validate_rows
from tests.ui.conftest import pair_rows
from tests.ui.live import REPO
from ui.service import LabelService


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_admin_workflow_from_the_command_line(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert rlhf(["label", "add-user", "alice", "--role", "admin", "--password-stdin", "--db", db]) == 0
    assert rlhf(["label", "add-user", "bob", "--password", "pw", "--db", db]) == 0
    assert rlhf(["label", "users", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "admin" in out and "bob" in out

    items = write_jsonl(tmp_path / "cands.jsonl", pair_rows(3, k=3))
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "g", "responses": ["good", "bad"], "gold": 0}])
    (tmp_path / "guide.txt").write_text("Prefer correct answers.\nThen shorter ones.")
    assert rlhf(["label", "create-campaign", "r1", "--from", str(items), "--gold", str(gold), "--overlap", "2",
                 "--pairs-per-prompt", "2", "--guidelines", f"@{tmp_path / 'guide.txt'}", "--db", db]) == 0
    assert "6 items, 1 gold" in capsys.readouterr().out

    svc = LabelService.open(db)
    cid = svc.campaign_id("r1")
    assert svc.get_campaign(cid)["guidelines"].startswith("Prefer correct answers.")
    for name, gold_pick in (("alice", "good"), ("bob", "bad")):
        uid = svc.user_id(name)
        while (a := svc.next_assignment(uid, cid)) is not None:
            if a.prompt == "g":
                choice = "A" if a.responses[0] == gold_pick else "B"
            else:
                choice = "A" if name == "alice" else "B"
            svc.submit_judgment(a.id, uid, choice=choice)
    svc.close()

    assert rlhf(["label", "progress", "r1", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "judgments 12/12 (100%)" in out and "Krippendorff" in out and "alice" in out
    assert rlhf(["label", "progress", "r1", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["progress"]["judgments"] == 12
    assert rlhf(["label", "campaigns", "--db", db]) == 0
    assert "100%" in capsys.readouterr().out

    out_file = tmp_path / "labels.jsonl"
    assert rlhf(["label", "export", "r1", str(out_file), "--aggregation", "majority", "--db", db]) == 0
    rows = read_rows(out_file)
    assert validate_rows(rows, None, str(out_file)) == "preference"
    assert rlhf(["label", "export", "r1", str(tmp_path / "gold-ok.jsonl"), "--min-gold-accuracy", "1", "--db", db]) == 0
    assert {r["labeler"] for r in read_rows(tmp_path / "gold-ok.jsonl")} == {"alice"}  # bob picked "bad"

    assert rlhf(["label", "close", "r1", "--db", db]) == 0
    assert rlhf(["label", "deactivate", "bob", "--db", db]) == 0
    assert rlhf(["label", "set-password", "alice", "--password", "new", "--db", db]) == 0
    svc = LabelService.open(db)
    assert svc.get_campaign(cid)["status"] == "closed" and not svc.get_user_by_name("bob").active
    assert svc.authenticate("alice", "new") is not None
    svc.close()


@pytest.mark.parametrize("argv, message", [
    (["label", "export", "nope", "x.jsonl"], "no campaign named 'nope'"),
    (["label", "create-campaign", "c", "--from", "missing.jsonl"], "candidates file not found"),
    (["label", "create-campaign", "c", "--policy", "runs/x/sft"], "--policy needs --prompts"),
    (["label", "add-user", "x", "--password", ""], "password"),
])
def test_mistakes_are_one_line_errors(db, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert rlhf(argv + ["--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlhf label: error:") and message in err and "\n" not in err


def test_bad_candidate_row_names_file_row_and_field(db, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [pair_rows(1)[0], {"prompt": "x", "responses": "not a list"}])
    assert rlhf(["label", "create-campaign", "c", "--from", str(bad), "--db", db]) == 2
    assert f"{bad}: line 2: field 'responses'" in capsys.readouterr().err  # 1-based, as editors count


def test_sampling_candidates_from_a_policy(db, tmp_path, capsys, monkeypatch):
    """The --policy path calls the policy code lazily; here the model side is a stand-in."""
    calls = {}

    def generate(model, tokenizer, prompts, max_new_tokens, temperature, seed, batch_size, num_return_sequences=1):
        calls.update(prompts=list(prompts), k=num_return_sequences, temperature=temperature, seed=seed)
        return [[f"{p}-sample{s}" for s in range(num_return_sequences)] for p in prompts]

    fake_generation = types.ModuleType("alignment.generation")
    fake_generation.generate = generate
    fake_models = types.ModuleType("alignment.models")
    fake_models.load_tokenizer = lambda path, cfg=None: "tokenizer"
    fake_models.load_policy = lambda path, cfg=None: "model"
    monkeypatch.setitem(sys.modules, "alignment.generation", fake_generation)
    monkeypatch.setitem(sys.modules, "alignment.models", fake_models)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "q1", "metadata": {"id": 1}}, {"prompt": "q2"}])
    assert rlhf(["label", "create-campaign", "sampled", "--policy", str(tmp_path / "sft"), "--prompts", str(prompts),
                 "--samples-per-prompt", "3", "--temperature", "0.7", "--db", db]) == 0
    assert calls == {"prompts": ["q1", "q2"], "k": 3, "temperature": 0.7, "seed": 0}
    assert "6 items" in capsys.readouterr().out  # 2 prompts x C(3,2) pairs
    svc = LabelService.open(db)
    uid = svc.create_user("u", None, simulated=True)
    a = svc.next_assignment(uid, svc.campaign_id("sampled"))
    assert set(a.responses) <= {"q1-sample0", "q1-sample1", "q1-sample2"}
    svc.submit_judgment(a.id, uid, choice="A")
    svc.export(svc.campaign_id("sampled"), tmp_path / "s.jsonl")
    (row,) = read_rows(tmp_path / "s.jsonl")
    assert row["chosen_policy"] == "sft" and row["chosen_checkpoint"] == str(tmp_path / "sft")
    assert row["metadata"] == {"id": 1}
    svc.close()


def test_the_app_imports_no_training_code():
    code = ("import sys, ui.app, ui.auth, ui.commands, ui.service, ui.export, ui.candidates, ui.plots; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'peft'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
