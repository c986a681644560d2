"""K samples per prompt: each prompt prefilled once (its cache copied K times) against once per sample.

The labels stage samples `labels.candidates_per_prompt` responses per prompt, and the reward
stage's gold test 8 more. transformers' `num_return_sequences` repeats every prompt before
the first forward, so each prompt was read K times; `alignment.generation.generate_ids` now
reads it once (`shared_prompt_cache`). Two contenders, interleaved round by round so that a
burst of load on this shared machine hits them alike:

- `repeated`: the prompts repeated K times, then one `generate` (what `num_return_sequences` does);
- `shared`:   `generate_ids(..., num_return_sequences=K)`, the path every stage takes now.

Both sample at T=1 (the labels stage's temperature) from SmolLM2-135M-Instruct, in the
recipe's precision (`--dtype`, default bfloat16-if-native), `--prompts` offline-suite prompts
through its chat template, `--new-tokens` tokens each, one thread. Reported: median CPU and
wall seconds per call, the load average before and after, the CPU-time ratio, and how many
rows drew the same tokens (not all: the batch shapes differ, so bf16 rounding does too).

    python bench/sampling_prefix_sharing.py                  # 3 rounds, 64 prompts x 8: about 6 min on 1 core
    python bench/sampling_prefix_sharing.py --repeat 1 --prompts 16 --no-append
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignment.generation import chat_prompts, generate_ids  # noqa: E402
from alignment.models import load_policy, load_tokenizer  # noqa: E402
from alignment.offline_models import materialize  # noqa: E402
from alignment.recipe.model import ModelConfig  # noqa: E402
from alignment.recipe.suite import SuiteConfig  # noqa: E402
from alignment.suite.generate import generate_suite  # noqa: E402
from bench.results import append_result  # noqa: E402


def sample(model, tokenizer, ids, mask, k: int, new_tokens: int, shared: bool, seed: int) -> tuple[float, float, torch.Tensor]:
    """CPU seconds, wall seconds and the new tokens of one call."""
    torch.manual_seed(seed)
    c0, w0 = time.process_time(), time.perf_counter()
    if shared:
        out = generate_ids(model, ids, mask, new_tokens, 1.0, tokenizer.eos_token_id, tokenizer.pad_token_id,
                           num_return_sequences=k).ids
    else:
        out = generate_ids(model, ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0), new_tokens, 1.0,
                           tokenizer.eos_token_id, tokenizer.pad_token_id).ids
    return time.process_time() - c0, time.perf_counter() - w0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="Interleaved rounds (each runs both contenders once).")
    parser.add_argument("--prompts", type=int, default=64, help="Prompts per call (the labels stage's batch).")
    parser.add_argument("--samples", type=int, default=8, help="Samples per prompt (labels.candidates_per_prompt).")
    parser.add_argument("--new-tokens", type=int, default=24, help="labels.max_new_tokens.")
    parser.add_argument("--dtype", default="bfloat16-if-native", help="model.dtype of the run.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see alignment/threads.py).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/sampling_prefix_sharing.jsonl.")
    args = parser.parse_args()

    os.environ["RLHF_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(name_or_path="offline:smollm2-135m-instruct", dtype=args.dtype)
    model_dir = str(materialize(model_cfg.name_or_path))
    tokenizer = load_tokenizer(model_dir, model_cfg)
    model = load_policy(model_dir, model_cfg).eval()
    prompts = [r["prompt"] for r in generate_suite(SuiteConfig(n_sft=8, n_prompts=args.prompts, n_eval=1), args.seed)["prompts"]]
    tokenizer.padding_side = "left"
    enc = tokenizer(chat_prompts(tokenizer, prompts[: args.prompts]), return_tensors="pt", padding=True,
                    add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    sample(model, tokenizer, ids[:4], mask[:4], 2, 2, True, args.seed)  # warm-up: kernels, allocator
    load_before = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {"repeated": [], "shared": []}
    same = []
    for round_ in range(args.repeat):
        outputs = {}
        for name in runs:
            cpu, wall, outputs[name] = sample(model, tokenizer, ids, mask, args.samples, args.new_tokens,
                                              name == "shared", args.seed + round_)
            runs[name].append((cpu, wall))
            print(f"round {round_ + 1}/{args.repeat} {name:>8}: {cpu:.1f} CPU-s, {wall:.1f} s", flush=True)
        a, b = outputs["repeated"], outputs["shared"]
        width = min(a.shape[1], b.shape[1])
        same.append(float((a[:, :width] == b[:, :width]).all(dim=1).float().mean()))
    load_after = os.getloadavg()

    figures = {name: {"cpu_s": statistics.median(c for c, _ in r), "wall_s": statistics.median(w for _, w in r)}
               for name, r in runs.items()}
    ratio = figures["repeated"]["cpu_s"] / figures["shared"]["cpu_s"]
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after; dtype {args.dtype}, {args.threads} "
          f"thread(s); {args.prompts} prompts (mean {float(mask.sum(1).float().mean()):.0f} tokens) x {args.samples} "
          f"samples x {args.new_tokens} tokens")
    for name, f in figures.items():
        print(f"{name:>8}: {f['cpu_s']:.1f} CPU-s, {f['wall_s']:.1f} s per call")
    print(f"CPU-time ratio repeated/shared: {ratio:.2f}x; rows with the same tokens: {statistics.mean(same):.2f}")
    if not args.no_append:
        path = append_result("sampling_prefix_sharing", {
            "args": vars(args), "load_before": load_before, "load_after": load_after, "figures": figures,
            "speedup": ratio, "same_rows": same})
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
