"""Reward-model training steps: the prompt read once per group against every conversation read whole.

`reward.share_prompt_prefix` (on by default) reads the prompt that a prompt's K responses
share once per step and gives each response a copy of its key/value cache
(`reward.encoding.shared_prefix_rewards`); the rewards and gradients are those of reading
every conversation whole (tests/reward/test_shared_prefix.py). Before it, the reward stage
also ran with gradient checkpointing, because TRL's RewardConfig turns it on by default and
our arguments never said otherwise. Three contenders, interleaved round by round so that a
burst of load on this shared machine hits them alike:

- `whole+ckpt`: every conversation whole, gradient checkpointing on (the stage before);
- `whole`:      every conversation whole, no checkpointing;
- `shared`:     the prompt once per group, no checkpointing (the stage now).

Each runs `--steps` optimiser steps (after one warm-up step) of `--batch-size` prompts with
`--responses` responses each and every pair of them compared, on SmolLM2-135M-Instruct with
the recipe's LoRA (r 16 on the last 8 blocks), in the recipe's precision (`--dtype`,
default bfloat16-if-native), on one thread. The prompts are the offline suite's, through
SmolLM2's chat template (its default system prompt included, as in the recipe); the
responses are the suite's demonstrations. Reported: median CPU seconds and wall seconds per
step, tokens read per step, the load average before and after, and each contender's
CPU-time ratio against `whole+ckpt`.

    python bench/reward_prefix_sharing.py                # 3 rounds x 4 steps, about 10 min on 1 AVX2 core
    python bench/reward_prefix_sharing.py --repeat 1 --steps 2 --no-append
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignment.models import lora_config, pick_device, training_precision  # noqa: E402
from alignment.offline_models import materialize  # noqa: E402
from alignment.recipe.sft import LoraConfig  # noqa: E402
from alignment.recipe.suite import SuiteConfig  # noqa: E402
from alignment.suite.generate import generate_suite  # noqa: E402
from bench.results import append_result  # noqa: E402
from reward.bradley_terry import bradley_terry_loss  # noqa: E402
from reward.comparisons import Comparisons, tokenize  # noqa: E402
from reward.stage import reward_model_to_train  # noqa: E402
from reward.training import PairCollator, batch_rewards  # noqa: E402

CONTENDERS = {"whole+ckpt": (False, True), "whole": (False, False), "shared": (True, False)}
"""name: (share the prompt prefix, gradient checkpointing)"""


def comparison_groups(tokenizer, n_prompts: int, k: int, seed: int) -> list[dict]:
    """Training examples as the reward stage builds them: per prompt, K demonstrations as its
    responses (its own and K-1 drawn from other prompts) and all C(K,2) pairs compared."""
    demos = generate_suite(SuiteConfig(n_sft=4 * n_prompts, n_prompts=8, n_eval=1), seed)["sft"]
    rng = random.Random(seed)
    rows = []
    for demo in demos[:n_prompts]:
        responses = [d["messages"][-1]["content"] for d in [demo] + rng.sample(demos, k - 1)]
        for a, b in itertools.combinations(dict.fromkeys(responses), 2):
            rows.append({"prompt": demo["messages"][:-1], "chosen": a, "rejected": b,
                         "margin": 0.0, "weight": 1.0, "target": 1.0})
    return tokenize(Comparisons(rows), tokenizer, max_length=None)


def train_steps(model_dir: Path, examples: list[dict], pad_id: int, share: bool, checkpointing: bool,
                steps: int, batch_size: int, dtype: str, seed: int) -> dict:
    """`steps` + 1 optimiser steps (the first thrown away); CPU and wall seconds of each kept one."""
    device = pick_device()
    precision = training_precision(dtype, device)
    model = reward_model_to_train(str(model_dir), seed).to(device)
    model.config.pad_token_id = pad_id
    lora = LoraConfig(enabled=True, r=16, alpha=32, last_layers=8)  # the SmolLM2 recipe's reward.lora
    model = get_peft_model(model, lora_config(lora, model, task_type="SEQ_CLS"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = PairCollator(pad_id, share_prefix=share)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision.bf16_autocast else nullcontext()
    cpu, wall, tokens = [], [], []
    for step in range(steps + 1):
        chunk = examples[(step * batch_size) % len(examples):][:batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        c0, w0 = time.process_time(), time.perf_counter()
        with autocast:
            rewards = batch_rewards(model, batch)
        loss = bradley_terry_loss(rewards[batch["pairs"][:, 0]], rewards[batch["pairs"][:, 1]])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            masks = [batch["prefix_mask"], batch["suffix_mask"]] if share else [batch["attention_mask"]]
            tokens.append(int(sum(m.sum() for m in masks)))
    return {"cpu_s": cpu, "wall_s": wall, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="Interleaved rounds (each runs every contender once).")
    parser.add_argument("--steps", type=int, default=4, help="Timed optimiser steps per contender and round.")
    parser.add_argument("--batch-size", type=int, default=4, help="Prompts per step (the recipe's reward.batch_size).")
    parser.add_argument("--responses", type=int, default=4, help="Responses per prompt (labels.candidates_per_prompt).")
    parser.add_argument("--dtype", default="bfloat16-if-native", help="model.dtype of the run.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see alignment/threads.py).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/reward_prefix_sharing.jsonl.")
    args = parser.parse_args()

    os.environ["RLHF_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    model_dir = materialize("offline:smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = comparison_groups(tokenizer, args.batch_size * (args.steps + 1), args.responses, args.seed)
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    for round_ in range(args.repeat):
        for name, (share, ckpt) in CONTENDERS.items():
            result = train_steps(model_dir, examples, tokenizer.pad_token_id, share, ckpt, args.steps,
                                 args.batch_size, args.dtype, args.seed)
            runs[name].append(result)
            print(f"round {round_ + 1}/{args.repeat} {name:>10}: {statistics.median(result['cpu_s']):.2f} CPU-s/step, "
                  f"{statistics.median(result['wall_s']):.2f} s/step, {statistics.median(result['tokens'])} tokens/step",
                  flush=True)
    load_after = os.getloadavg()

    figures = {}
    for name, results in runs.items():
        figures[name] = {key: statistics.median(v for r in results for v in r[key]) for key in ("cpu_s", "wall_s", "tokens")}
    base = figures["whole+ckpt"]["cpu_s"]
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after; dtype {args.dtype}, "
          f"{args.threads} thread(s), {args.batch_size} prompts x {args.responses} responses per step")
    print(f"{'contender':>10} | CPU-s/step | s/step | tokens/step | CPU-time ratio vs whole+ckpt")
    for name, f in figures.items():
        print(f"{name:>10} | {f['cpu_s']:10.2f} | {f['wall_s']:6.2f} | {f['tokens']:11.0f} | {base / f['cpu_s']:.2f}x")
    if not args.no_append:
        path = append_result("reward_prefix_sharing", {
            "args": vars(args), "load_before": load_before, "load_after": load_after, "figures": figures,
            "speedup_vs_whole_ckpt": {n: base / f["cpu_s"] for n, f in figures.items()}})
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
