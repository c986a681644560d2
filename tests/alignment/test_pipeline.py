"""`rlhf run`: every recipe plans, the quickstart runs end to end (smoke size), a run killed
during PPO resumes without redoing SFT or reward modelling, and human-label mode pauses
until judgments arrive through the label service."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignment.pipeline import build_plan
from alignment.recipe import load_recipe

RECIPES = sorted(Path("configs").glob("*.yaml"))


def rlhf_run(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "alignment.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads_and_plans_without_running(path, tmp_path):
    recipe = load_recipe(path, [f"output_dir={tmp_path / 'run'}"])
    plan = build_plan(recipe)
    assert [s.stage for s in plan][: len(recipe.pipeline.stages)]
    assert not (tmp_path / "run").exists()  # planning writes nothing
    result = subprocess.run([sys.executable, "-m", "alignment.cli", "run", str(path), f"output_dir={tmp_path / 'run'}", "--dry-run"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plan for" in result.stdout


def test_rounds_plan_repeats_the_round_stages(tmp_path):
    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path}", "pipeline.rounds=2"])
    plan = [(s.stage, s.round) for s in build_plan(recipe)]
    assert plan.count(("samples", 2)) == 1 and plan.count(("sft", 1)) == 1 and plan[-1] == ("eval", 1)
    round2 = next(s for s in build_plan(recipe) if s.round == 2 and s.stage == "reward").recipe
    assert round2.reward.comparisons == [f"{tmp_path}/labels/comparisons.jsonl", f"{tmp_path}/round2/labels/comparisons.jsonl"]


def test_round_overrides_set_a_rounds_settings_and_stages(tmp_path):
    recipe = load_recipe("configs/quickstart.yaml", [
        f"output_dir={tmp_path}", "pipeline.rounds=2", "ppo.target_kl=0.5",
        "pipeline.round_overrides={2: [ppo.target_kl=1.0, labels.candidates_per_prompt=3, "
        "'pipeline.stages=[samples, labels, reward, ppo]']}"])
    plan = build_plan(recipe)
    assert [(s.stage, s.round) for s in plan if s.round == 2 and s.stage != "eval"] == [
        ("samples", 2), ("labels", 2), ("reward", 2), ("ppo", 2)]  # no DPO in round 2
    assert ("dpo", 1) in [(s.stage, s.round) for s in plan]
    ppo1, ppo2 = (next(s for s in plan if s.stage == "ppo" and s.round == r).recipe for r in (1, 2))
    assert (ppo1.ppo.target_kl, ppo2.ppo.target_kl) == (0.5, 1.0)
    assert ppo2.labels.candidates_per_prompt == 3 and ppo1.labels.candidates_per_prompt != 3
    assert ppo2.output_dir == f"{tmp_path}/round2" and len(ppo2.reward.comparisons) == 2
    assert next(s for s in plan if s.stage == "eval").recipe.ppo.target_kl == 0.5
    # the run's own stage list still bounds every round: a round can drop stages, not add them
    trimmed = load_recipe("configs/quickstart.yaml", [
        f"output_dir={tmp_path}", "pipeline.rounds=2", "pipeline.stages=[data, sft, samples, labels]",
        "pipeline.round_overrides={2: ['pipeline.stages=[samples, labels, reward, ppo]']}"])
    assert [(s.stage, s.round) for s in build_plan(trimmed)] == [
        ("data", 1), ("sft", 1), ("samples", 1), ("labels", 1), ("samples", 2), ("labels", 2)]


@pytest.mark.parametrize("overrides, message", [
    ("{3: [ppo.target_kl=1.0]}", "round 3 does not exist"),
    ("{2: [pipeline.rounds=3]}", "cannot be overridden per round"),
    ("{2: [ppo.target_kl=-1]}", "pipeline.round_overrides.2"),
    ("{2: [ppo.nope=1]}", "unknown key 'ppo.nope'"),
    ("{2: ['pipeline.stages=[sft, ppo]']}", "only round stages"),
])
def test_a_bad_round_override_is_refused_when_the_recipe_loads(tmp_path, overrides, message):
    result = subprocess.run([sys.executable, "-m", "alignment.cli", "run", "configs/quickstart.yaml", f"output_dir={tmp_path}",
                             "pipeline.rounds=2", f"pipeline.round_overrides={overrides}", "--dry-run"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())


def test_unknown_stage_and_from_are_rejected(tmp_path):
    result = subprocess.run([sys.executable, "-m", "alignment.cli", "run", "configs/quickstart.yaml", f"output_dir={tmp_path}",
                             "pipeline.stages=[sft, nope]", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown stage" in result.stderr


def _marker(folder: Path) -> dict:
    return json.loads((folder / "COMPLETE.json").read_text())


@pytest.mark.slow
def test_quickstart_smoke_end_to_end_and_resume_after_kill_during_ppo(tmp_path):
    out = tmp_path / "qs"
    args = ["configs/quickstart.yaml", "pipeline.smoke=true", f"output_dir={out}", "ppo.total_episodes=160"]
    first = rlhf_run(*args, start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline and not list((out / "ppo" / "checkpoints").glob("iter-*/state.json")):
        if first.poll() is not None:
            pytest.fail(f"run ended before PPO checkpointed:\n{first.stdout.read()[-3000:]}")
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "ppo" / "COMPLETE.json").exists()
    before = {stage: _marker(out / stage) for stage in ("sft", "reward")}

    second = rlhf_run(*args)
    log, _ = second.communicate(timeout=1200)
    assert second.returncode == 0, log[-3000:]
    assert "sft: already complete" in log and "reward: already complete" in log
    assert {stage: _marker(out / stage) for stage in ("sft", "reward")} == before  # not redone
    for stage in ("data", "sft", "samples", "labels", "reward", "ppo", "dpo", "eval"):
        assert (out / stage / "COMPLETE.json").is_file(), stage
    summary = json.loads((out / "summary.json").read_text())
    assert all(s["status"] == "done" for s in summary["stages"].values())
    assert "gold/eval_seen" in summary["stages"]["sft"]["metrics"]
    report = (out / "report.html").read_text()
    assert "<img" in report and "ppo" in report and "dpo" in report
    assert (out / "logs" / "ppo.log").is_file()


@pytest.mark.slow
def test_human_label_mode_pauses_then_resumes_with_judgments_from_the_service(tmp_path):
    from alignment.data.files import read_rows
    from reward.labeling import simulate_campaign
    from reward.simulated import SimulatedAnnotator
    from ui.service import LabelService

    out = tmp_path / "human"
    args = ["configs/quickstart.yaml", "pipeline.smoke=true", f"output_dir={out}", "labels.source=human",
            "labels.prompts=48", "pipeline.stages=[sft, samples, labels, reward]"]
    first = rlhf_run(*args)
    log, _ = first.communicate(timeout=900)
    assert first.returncode == 0, log[-3000:]
    assert "more needed" in log and "rlhf label serve" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["labels"]["status"] == "waiting"
    assert not (out / "reward").exists()

    recipe = load_recipe(out / "recipe.yaml")
    service = LabelService.open(recipe.labels.db)
    campaign = service.campaign_id(recipe.labels.campaign.replace("{round}", "1"))
    candidates = read_rows(out / "samples" / "candidates.jsonl")
    simulate_campaign(service, campaign, [SimulatedAnnotator("human-stand-in", 0.1, 0.0)], candidates, 0)
    service.close()

    second = rlhf_run(*args)
    log, _ = second.communicate(timeout=900)
    assert second.returncode == 0, log[-3000:]
    assert (out / "reward" / "COMPLETE.json").is_file()
    assert json.loads((out / "summary.json").read_text())["stages"]["labels"]["status"] == "done"


@pytest.mark.slow
def test_failing_stage_keeps_earlier_stages_and_names_its_log(tmp_path):
    out = tmp_path / "fail"
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{broken\n')
    args = ["configs/quickstart.yaml", "pipeline.smoke=true", f"output_dir={out}", "labels.source=file",
            f"labels.file={bad}", "pipeline.stages=[sft, labels, reward]"]
    run = rlhf_run(*args)
    log, _ = run.communicate(timeout=900)
    assert run.returncode == 1
    assert "stage 'reward' failed" in log and "row 2" in log and str(out / "logs" / "reward.log") in log
    assert (out / "sft" / "COMPLETE.json").is_file()
    sft_marker = _marker(out / "sft")
    bad.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "yes good", "rejected": "no"}) + "\n" for i in range(40)))
    rerun = rlhf_run(*args)
    log, _ = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, log[-3000:]
    assert _marker(out / "sft") == sft_marker and (out / "reward" / "COMPLETE.json").is_file()


def test_run_warns_when_the_finished_sft_never_saw_the_data_stage(tmp_path):
    from alignment.pipeline import sft_skips_the_data_stage
    from alignment.run_dir import RunDir

    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path}"])
    run, plan = RunDir(recipe), build_plan(recipe)
    run.write_metrics("sft", {"data": "suite:sft"})  # `rlhf sft` alone, before `rlhf data clean`
    assert "rerun with --from sft" in sft_skips_the_data_stage(run, plan)
    run.write_metrics("sft", {"data": str(tmp_path / "data" / "train.jsonl")})
    assert sft_skips_the_data_stage(run, plan) is None
    no_data = [step for step in plan if step.stage != "data"]
    run.write_metrics("sft", {"data": "suite:sft"})
    assert sft_skips_the_data_stage(run, no_data) is None


def test_a_later_rounds_candidates_record_the_policy_that_wrote_them(tmp_path, monkeypatch):
    """Round 2 samples the last round's PPO policy; its rows must not say they came from SFT."""
    import alignment.generation
    import alignment.models
    from alignment.data.files import read_rows
    from alignment.pipeline import round_recipe, samples_step
    from alignment.suite.world import build_world

    recipe = load_recipe("configs/quickstart.yaml", [
        f"output_dir={tmp_path / 'run'}", "pipeline.rounds=2", "suite.n_sft=100", "suite.n_prompts=50", "suite.n_eval=12",
        "suite.tiny_model.hidden_size=32", "suite.tiny_model.intermediate_size=64",
        "suite.tiny_model.num_hidden_layers=1", "suite.tiny_model.num_attention_heads=2", "labels.prompts=8",
    ])
    build_world(recipe)
    round2 = round_recipe(recipe, 2)
    previous = Path(round2.output_dir) / "previous-ppo"
    previous.mkdir(parents=True)
    (previous / "config.json").write_text("{}")  # stands in for the round-1 PPO checkpoint
    monkeypatch.setattr(alignment.generation, "generate",
                        lambda model, tok, prompts, num_return_sequences=1, **kw: [["yes", "no"]] * len(prompts))
    monkeypatch.setattr(alignment.models, "load_policy", lambda *a, **k: None)
    monkeypatch.setattr(alignment.models, "load_tokenizer", lambda *a, **k: None)

    info = samples_step(round2, round=2)

    rows = read_rows(info["candidates"])
    assert rows and info["policy"] == str(previous)
    assert {r["metadata"]["policy"] for r in rows} == {"ppo"}
    assert {r["metadata"]["checkpoint"] for r in rows} == {str(previous)}
