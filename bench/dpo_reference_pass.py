"""DPO's reference pass on a finished run's labels: each prompt and distinct completion read once, against TRL's.

`rlhf dpo` precomputes log pi_ref(y | x) for every pair before training. TRL's DPOTrainer reads
each pair's chosen and rejected conversation whole; `alignment.dpo.SharedPromptDPOTrainer`
reads each prompt once and each distinct completion once (`alignment.reference_logprobs`).
This builds both trainers on the same run (its SFT policy, its label export, the recipe's
LoRA, precision and `dpo.max_steps` subset, as the stage does), times each pass, and compares
the figures: they differ only by float rounding (bf16 autocast on a CPU with AVX512-BF16).
The contenders alternate `--repeat` times, so a burst of load hits them alike.

    python bench/dpo_reference_pass.py runs/smollm2                # the recipe's run; about 5 min on 1 core
    python bench/dpo_reference_pass.py runs/smollm2 --repeat 1 --no-append
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from trl import DPOTrainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignment.dpo import SharedPromptDPOTrainer, preference_rows, rows_for_steps  # noqa: E402
from alignment.recipe import load_recipe  # noqa: E402
from alignment.run_dir import RunDir  # noqa: E402
from bench.dpo_trainers import dpo_trainer  # noqa: E402
from bench.results import append_result  # noqa: E402

CONTENDERS = {"trl": DPOTrainer, "shared": SharedPromptDPOTrainer}


def reference_pass(recipe, rows: list[dict], trainer_class) -> tuple[float, float, list[float], list[float]]:
    """CPU and wall seconds of one trainer's construction, which runs the reference pass, and its figures."""
    c0, w0 = time.process_time(), time.perf_counter()
    trainer = dpo_trainer(recipe, rows, trainer_class, recipe.dpo.max_steps, recipe.dpo.batch_size,
                          "/tmp/bench_dpo_reference_pass")
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    data = trainer.train_dataset
    return cpu, wall, list(data["ref_chosen_logps"]), list(data["ref_rejected_logps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run", help="A run folder with sft/ and labels/ (its recipe.yaml is read).")
    parser.add_argument("--repeat", type=int, default=1, help="Alternating rounds (each runs both passes once).")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see alignment/threads.py).")
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/dpo_reference_pass.jsonl.")
    args = parser.parse_args()

    os.environ["RLHF_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(str(Path(args.run) / "recipe.yaml"), [f"output_dir={args.run}"])
    rows, _, _ = preference_rows(recipe, RunDir(recipe))
    rows = rows_for_steps(recipe, rows)
    load_before = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    figures = {}
    for round_ in range(args.repeat):
        for name, trainer_class in CONTENDERS.items():
            cpu, wall, chosen, rejected = reference_pass(recipe, rows, trainer_class)
            times[name].append((cpu, wall))
            figures[name] = torch.tensor(chosen + rejected)
            print(f"round {round_ + 1}/{args.repeat} {name:>6}: {cpu:.1f} CPU-s, {wall:.1f} s", flush=True)
    load_after = os.getloadavg()
    gap = (figures["trl"] - figures["shared"]).abs()
    summary = {name: {"cpu_s": statistics.median(c for c, _ in t), "wall_s": statistics.median(w for _, w in t)}
               for name, t in times.items()}
    ratio = summary["trl"]["cpu_s"] / summary["shared"]["cpu_s"]
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.threads} thread(s); "
          f"{len(rows)} pairs, model.dtype {recipe.model.dtype}")
    for name, s in summary.items():
        print(f"{name:>6}: {s['cpu_s']:.1f} CPU-s, {s['wall_s']:.1f} s (trainer construction, with tokenizing)")
    print(f"CPU-time ratio trl/shared: {ratio:.2f}x; |difference| per sequence: mean {gap.mean():.4f}, "
          f"max {gap.max():.4f} nats (sequence log-probs average {figures['trl'].mean():.1f})")
    if not args.no_append:
        path = append_result("dpo_reference_pass", {
            "args": vars(args), "pairs": len(rows), "load_before": load_before, "load_after": load_after,
            "figures": summary, "speedup": ratio, "mean_abs_gap": float(gap.mean()), "max_abs_gap": float(gap.max())})
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
