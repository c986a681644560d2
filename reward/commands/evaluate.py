"""`rlhf reward-eval <checkpoint> <comparisons>`: how good is a reward model?"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Evaluate a reward checkpoint on comparisons (preference or ranking rows): pairwise accuracy with a "
        "bootstrap 95%% CI, accuracy against the gold checker for offline-suite rows, a length-only baseline, "
        "per-category accuracy, length bias and calibration. Prints a table; writes metrics.json and "
        "calibration.png."
    )
    parser.add_argument("checkpoint", help="Reward model folder (save_pretrained + reward_stats.json).")
    parser.add_argument("comparisons", nargs="+", help="Preference or ranking files (.jsonl, .parquet, datasets folder).")
    parser.add_argument("--out", default=None, help="Folder for metrics.json and calibration.png "
                        "(default: <checkpoint>/eval).")
    parser.add_argument("--by", default=None, metavar="COLUMN",
                        help="Category column for per-category accuracy (a key or metadata.<key>); "
                        "default: suite family and constraint types.")
    parser.add_argument("--max-length", type=int, default=None, help="Drop pairs longer than this many tokens.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=2000, help="Bootstrap resamples.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")


def main(args: argparse.Namespace) -> int:
    from alignment.errors import DataError
    from alignment.run_dir import write_json_atomic
    from reward.comparisons import prepare, read_comparison_file, tokenize
    from reward.evaluation import evaluate_pairs, format_table, plot_calibration
    from reward.scoring import RewardScorer

    scorer = RewardScorer.from_pretrained(args.checkpoint, device=args.device)
    rows = []
    for path in args.comparisons:
        rows += read_comparison_file(path)
    comparisons = prepare(rows, ties="exclude", use_margin=False)
    max_length = args.max_length or scorer.max_length
    tokenize(comparisons, scorer.tokenizer, max_length)  # drops (and counts) over-long pairs
    if not comparisons.rows:
        raise DataError(f"{', '.join(args.comparisons)}: no usable comparisons ({comparisons.report()})")
    print(f"reward-eval: {comparisons.report()}")
    kept = comparisons.rows
    rc, rr = scorer.raw_pair_scores([r["prompt"] for r in kept], [r["chosen"] for r in kept],
                                    [r["rejected"] for r in kept], batch_size=args.batch_size, progress=True)
    metrics = evaluate_pairs(kept, rc.numpy(), rr.numpy(), category_column=args.by, bootstrap_samples=args.bootstrap)
    metrics["data"] = {"sources": list(args.comparisons), "dropped": dict(comparisons.dropped),
                       "checkpoint": str(args.checkpoint)}
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", metrics)
    plot_calibration(metrics, out / "calibration.png")
    print(format_table(metrics))
    print(f"reward-eval: wrote {out / 'metrics.json'} and {out / 'calibration.png'}")
    return 0
