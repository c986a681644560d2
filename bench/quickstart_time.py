"""Wall time per stage of a finished `rlhf run`, read from its summary.json.

    python bench/quickstart_time.py [runs/quickstart] [--append]

Prints a table of stage wall times and their share of the total; with --append, adds one
JSON line (machine, date, git commit, per-stage seconds) to bench/results/quickstart_time.jsonl
so that a slower stage shows up over time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import append_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="runs/quickstart")
    parser.add_argument("--append", action="store_true", help="Append the figures to bench/results/.")
    args = parser.parse_args()
    summary_path = Path(args.run_dir) / "summary.json"
    if not summary_path.is_file():
        print(f"no summary.json in {args.run_dir}: run `rlhf run <recipe>` first", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    times = {k: v.get("wall_time_s", 0.0) for k, v in summary["stages"].items()}
    total = sum(times.values()) or 1.0
    print(f"{'stage':<20}{'seconds':>10}{'share':>8}")
    for stage, seconds in times.items():
        print(f"{stage:<20}{seconds:>10.1f}{seconds / total:>8.0%}")
    print(f"{'total':<20}{total:>10.1f}")
    if args.append:
        append_result("quickstart_time", {"run_dir": args.run_dir, "stages_s": times, "total_s": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
