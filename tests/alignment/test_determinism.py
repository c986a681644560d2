"""The smoke loop gives bit-identical weights however it is started (issue 19).

Three ways of running one recipe: uninterrupted in one process; killed right after the first
checkpoint of each trained stage and resumed (`RLHF_EXIT_AFTER_CHECKPOINT`, alignment/interrupt.py);
and each stage in a process of its own. Every stage must draw only from generators the recipe
seeds, so nothing that ran earlier in the process (the reward stage's Trainer left bf16 in
accelerate's process-wide state, and PPO trained under it) can move a weight.

The loop is the smoke loop shrunk further (no final evaluation stage, a handful of held-out
prompts), so that the three runs cost about as much as two minutes of CI each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignment.interrupt import ENV, KILLED

pytestmark = pytest.mark.slow

TRAINED = ("sft", "reward", "ppo", "dpo")
STAGES = ("data", "sft", "samples", "labels", "reward", "ppo", "dpo")
SHRINK = [f"pipeline.stages=[{', '.join(STAGES)}]", "sft.max_steps=12", "sft.save_steps=6", "sft.gold_eval_prompts=0",
          "reward.gold_test_prompts=", "ppo.total_episodes=48", "ppo.eval_max_prompts=4", "dpo.eval_max_prompts=4"]


def rlhf_run(out: Path, *extra: str, kill_after: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if kill_after:
        env[ENV] = kill_after
    args = ["configs/quickstart.yaml", "pipeline.smoke=true", f"output_dir={out}", *SHRINK, *extra]
    return subprocess.run([sys.executable, "-m", "alignment.cli", "run", *args], capture_output=True, text=True,
                          env=env, timeout=900)


def weights(out: Path) -> dict[str, bytes]:
    """Each trained stage's saved weights, as bytes (bit for bit), plus the judgments they came from
    (the export also names the run's own folder, which differs between the runs by design)."""
    found = {stage: (out / stage / "model.safetensors").read_bytes() for stage in TRAINED}
    rows = [json.loads(line) for line in (out / "labels" / "comparisons.jsonl").read_text().splitlines()]
    found["labels"] = json.dumps([[r["prompt"], r["chosen"], r["rejected"], r["label"], r["labeler"]] for r in rows]).encode()
    return found


def assert_same(found: dict[str, bytes], expected: dict[str, bytes]) -> None:
    differ = [name for name in expected if found[name] != expected[name]]
    assert not differ, f"not bit-identical to the uninterrupted run: {differ}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("determinism") / "uninterrupted"
    result = rlhf_run(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return weights(out)


def test_killed_and_resumed_in_every_trained_stage(tmp_path, uninterrupted):
    out = tmp_path / "resumed"
    for stage in TRAINED:  # each run resumes the stage the previous one was killed in, then dies in the next
        killed = rlhf_run(out, kill_after=stage)
        assert killed.returncode == KILLED, (stage, killed.stdout[-3000:] + killed.stderr[-3000:])
        assert not (out / stage / "COMPLETE.json").exists()
        assert any((out / stage / "checkpoints").iterdir()), stage
    final = rlhf_run(out)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    for stage in TRAINED:
        assert "resuming from" in (out / "logs" / f"{stage}.log").read_text(), stage
    assert_same(weights(out), uninterrupted)


def test_each_stage_in_its_own_process(tmp_path, uninterrupted):
    out = tmp_path / "separate"
    for stage in STAGES:
        result = rlhf_run(out, f"pipeline.stages=[{stage}]")
        assert result.returncode == 0, (stage, result.stdout[-3000:] + result.stderr[-3000:])
    assert_same(weights(out), uninterrupted)
