"""Time `rlhf data inspect` on generated SFT rows, near-dedup on (target: 100,000 rows in <= 60 s on 2 cores).

    python bench/data_inspect.py [--rows 100000] [--work /tmp/bench_data]

The rows come from `alignment.data.synthetic` (varied, with 1% of each defect kind injected,
so that every check has work to do). Token lengths use the offline world's policy tokenizer
and contamination is checked against the suite's evaluation splits, as in the quickstart;
the world is built before the clock starts. The timed command is the real CLI in a fresh
process, imports included. Prints rows/s and the machine's load average before and after,
because a shared 2-core machine can easily halve the figure, and appends them to
bench/results/data_inspect.jsonl (--no-append skips that).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--work", default="/tmp/bench_data_inspect")
    parser.add_argument("--target-seconds", type=float, default=60.0)
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/data_inspect.jsonl.")
    args = parser.parse_args()

    from alignment.data.synthetic import INJECTABLE, clean_sft_rows, inject_defects
    from alignment.errors import UserError
    from alignment.recipe import load_recipe
    from alignment.run_dir import ensure_offline_world

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    overrides = [f"output_dir={work / 'run'}", "data.report_near_dedup=true"]
    print("building the offline world (not timed)...", flush=True)
    try:
        ensure_offline_world(load_recipe(None, overrides))
    except UserError:  # built by an older suite version: this is the benchmark's own scratch folder
        shutil.rmtree(work / "run")
        ensure_offline_world(load_recipe(None, overrides))

    data = work / f"sft_{args.rows}.jsonl"
    if not data.is_file():
        n_clean = args.rows // 1.02 + 1  # duplicates add 2% rows; cut back to exactly --rows
        rates = {k: 0.01 for k in INJECTABLE if k != "contaminated"}
        rows, _ = inject_defects(clean_sft_rows(int(n_clean), seed=0), rates, seed=1)
        with open(data, "w", encoding="utf-8") as f:
            for row in rows[: args.rows]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n = sum(1 for _ in open(data, encoding="utf-8"))

    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "alignment.cli", "data", "inspect", str(data), *overrides, "--out", str(work / "report")],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and its worker processes
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        return proc.returncode
    report = json.loads((work / "report" / "report.json").read_text())["datasets"]["sft"]
    print(proc.stdout)
    print(f"rows: {n}; wall time {seconds:.1f} s (inspection pass {report['seconds']} s): {n / seconds:,.0f} rows/s end to end")
    print(
        f"CPU time (CLI + workers): {cpu:.1f} s; with the machine to itself, 2 cores give a wall time of about "
        f"{cpu / 2:.1f} s (if perfectly parallel) to {cpu:.1f} s (if serial)"
    )
    print(f"target: {args.target_seconds:.0f} s -> {'met' if seconds <= args.target_seconds else 'NOT met'}")
    print(f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}; cores {os.cpu_count()}")
    if not args.no_append:
        from results import append_result

        path = append_result("data_inspect", {
            "rows": n, "near_dedup": True, "wall_s": round(seconds, 1), "inspection_pass_s": report["seconds"],
            "rows_per_s": round(n / seconds), "cpu_s": round(cpu, 1), "num_proc": report.get("settings", {}).get("num_proc"),
            "target_s": args.target_seconds, "met": seconds <= args.target_seconds,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
        })
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
