"""`rlhf eval` end to end on the offline world: a short SFT against the base model, a damaged
copy of it, and itself; then the pipeline's evaluation of several arms of one run."""

import json
import re
from pathlib import Path

import pytest
import torch

from alignment.cli import main as cli
from tests.alignment.eval_helpers import one_thread, tiny_reward  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PROMPTS_PER_SET = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    """World + short SFT + a damaged SFT (weights with noise) + a reward checkpoint."""
    from alignment.recipe import load_recipe
    from alignment.sft import train_sft

    tmp = tmp_path_factory.mktemp("e2e")
    root = tmp / "run"
    overrides = [
        f"output_dir={root}", "suite.n_sft=1000", "suite.n_prompts=100", "suite.n_eval=40", "data.eval_fraction=0.02",
        "sft.max_steps=150", "sft.eval_steps=1000", "sft.save_steps=1000", "sft.logging_steps=1000",
        "sft.gold_eval_prompts=4", "sft.report_to=[none]",
        f"eval.max_prompts_per_set={PROMPTS_PER_SET}", "eval.max_new_tokens=24", "eval.kl_prompts=24",
        "eval.bootstrap_samples=1000", f"eval.cache_dir={tmp / 'cache'}",
    ]
    recipe = load_recipe("configs/quickstart.yaml", overrides)
    train_sft(recipe)
    sft = root / "sft"
    noisy = tmp / "noisy"
    damage(sft, noisy)
    reward = tiny_reward(tmp / "rm", str(sft))
    return {"recipe": recipe, "recipe_file": str(root / "recipe.yaml"), "base": str(root / "base"), "sft": str(sft),
            "noisy": str(noisy), "reward": reward, "tmp": tmp}


def damage(src: Path, dst: Path, scale: float = 3.0, seed: int = 0) -> None:
    """The SFT model with Gaussian noise of `scale` times each weight matrix's own spread: at 3x
    its text is garbage (gold near the random base model's), at 1x it was barely hurt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * scale)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


def evaluate(run, baseline, candidate, out, *extra):
    return cli(["eval", "--recipe", run["recipe_file"], "--baseline", run[baseline], "--candidate", run[candidate],
                "--reward", run["reward"], "--out", str(run["tmp"] / out), *extra])


def metrics(run, out):
    return json.loads((run["tmp"] / out / "metrics.json").read_text())


def test_sft_against_base_is_a_significant_improvement(run):
    evaluate(run, "base", "sft", "sft_vs_base")
    comp = metrics(run, "sft_vs_base")["comparisons"]["sft"]
    assert "gold.diff" in comp["significant_improvements"]
    assert comp["metrics"]["gold.diff"]["low"] > 0
    assert "gold.diff" not in comp["significant_regressions"]


def test_damaged_candidate_fails_its_gates_with_non_zero_exit(run, capsys):
    assert evaluate(run, "sft", "noisy", "noisy_vs_sft") == 1
    m = metrics(run, "noisy_vs_sft")
    comp = m["comparisons"]["noisy"]
    assert not comp["passed"] and "gold.diff" in comp["significant_regressions"]
    failed = {g["metric"] for g in comp["gates"] if g["status"] == "fail"}
    assert "gold.diff" in failed
    assert "FAIL" in capsys.readouterr().out


def test_sft_against_itself_passes_every_gate_with_cis_covering_zero(run):
    assert evaluate(run, "sft", "sft", "sft_vs_sft") == 0
    comp = metrics(run, "sft_vs_sft")["comparisons"]["sft (candidate)"]
    assert comp["gates"] and all(g["status"] == "pass" for g in comp["gates"]), comp["gates"]
    assert not comp["significant_regressions"] and not comp["significant_improvements"]
    for name, est in comp["metrics"].items():
        null = 0.0 if name.endswith(".diff") else 0.5
        assert est["low"] <= null <= est["high"], (name, est)


def test_report_has_its_plots(run):
    html = (run["tmp"] / "noisy_vs_sft" / "report.html").read_text()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) >= 4
    for title in ("Headline", "Gates: noisy", "Biggest regressions and improvements: noisy"):
        assert title in html


def test_pipeline_evaluates_every_arm_with_gold_cis_and_kl(run):
    from alignment.evaluation import evaluate_arms, run_eval_stage
    from alignment.run_dir import RunDir

    recipe = run["recipe"]
    m = run_eval_stage(recipe)  # arms found in the run: base and sft
    assert set(m["arms"]) == {"base", "sft"} and m["baseline"] == "sft"
    assert RunDir(recipe).is_done("eval")
    eval_dir = Path(recipe.output_dir) / "eval"
    assert {p.name for p in eval_dir.iterdir()} >= {"metrics.json", "report.md", "report.html", "COMPLETE.json"}
    assert m["arms"]["sft"]["kl.k3_seq"]["value"] == 0.0  # SFT is the reference
    assert m["arms"]["base"]["kl.k3_seq"]["value"] > 0.0

    out = run["tmp"] / "arms"
    m = evaluate_arms(recipe, arms={"base": run["base"], "sft": run["sft"], "noisy": run["noisy"]},
                      reward=run["reward"], out_dir=out)
    for arm, row in m["arms"].items():
        gold = row["gold"]
        assert gold["low"] <= gold["value"] <= gold["high"], arm
        assert "kl.k3_seq" in row and "kl.k1_seq" in row
    assert m["arms"]["sft"]["gold"]["value"] > m["arms"]["base"]["gold"]["value"]
    html = (out / "report.html").read_text()
    assert 'alt="reward over-optimisation"' in html  # three checkpoints with KL: the Gao et al. view
