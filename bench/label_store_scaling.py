"""The label store as a campaign fills: judgments per second at its start against its end.

    python bench/label_store_scaling.py                       # 6,000 pairwise items, 3 labelers
    python bench/label_store_scaling.py --items 16000 --overlap 2 --window 1000
    python bench/label_store_scaling.py --db postgresql://...  # an empty PostgreSQL database

Creates one pairwise campaign in a fresh SQLite file (or the database given), then has the
labelers take turns, each asking `LabelService.next_assignment` for an item and answering it
with `submit_judgment`: the two calls every human click and every simulated judgment make,
in one transaction each. The first `--window` judgments and the last are timed; their ratio
(end over start, in judgments per second) says whether a request costs more as the campaign
fills. It should be about 1: the next item is found through the `items.filled` index rather
than by walking every item judged so far.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from results import append_result  # noqa: E402


def pair_rows(n_items: int) -> list[dict]:
    """`n_items` prompts with two distinct responses each: one pairwise item apiece."""
    return [{"prompt": f"prompt {i}", "responses": [f"answer {i} a", f"answer {i} b"]} for i in range(n_items)]


def label_until_done(service, campaign_id: int, user_ids: list[int], window: int) -> dict:
    """Judge every item; the time of the first and the last `window` judgments."""
    stamps: list[float] = [time.perf_counter()]
    active = list(user_ids)
    while active:
        for uid in list(active):
            a = service.next_assignment(uid, campaign_id)
            if a is None:
                active.remove(uid)
                continue
            service.submit_judgment(a.id, uid, choice="A", client_token=a.token, time_spent_s=0.0)
            stamps.append(time.perf_counter())
    n = len(stamps) - 1
    if n < 2 * window:
        raise SystemExit(f"only {n} judgments: make --items at least 2 x --window")
    start = window / (stamps[window] - stamps[0])
    end = window / (stamps[n] - stamps[n - window])
    return {"judgments": n, "total_s": round(stamps[n] - stamps[0], 2), "start_per_s": round(start, 1),
            "end_per_s": round(end, 1), "end_over_start": round(end / start, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=6000, help="Pairwise items in the campaign.")
    parser.add_argument("--overlap", type=int, default=1, help="Labelers per item.")
    parser.add_argument("--labelers", type=int, default=3, help="Labelers taking turns (at least --overlap).")
    parser.add_argument("--window", type=int, default=1000, help="Judgments timed at the start and at the end.")
    parser.add_argument("--db", default=None, help="Database URL (default: a new SQLite file in a temp folder).")
    parser.add_argument("--no-append", action="store_true", help="Do not record the figures in bench/results/.")
    args = parser.parse_args()
    if args.labelers < args.overlap:
        parser.error("--labelers must be at least --overlap, or items can never fill")

    from ui.service import LabelService

    with tempfile.TemporaryDirectory() as tmp:
        service = LabelService.open(args.db or f"sqlite:///{tmp}/bench.db")
        try:
            t0 = time.perf_counter()
            cid = service.create_campaign("bench", items=pair_rows(args.items), overlap=args.overlap)
            created_s = time.perf_counter() - t0
            users = [service.ensure_user(f"bench-{k}") for k in range(args.labelers)]
            figures = label_until_done(service, cid, users, args.window)
        finally:
            service.close()
    figures = {"items": args.items, "overlap": args.overlap, "labelers": args.labelers, "window": args.window,
               "db": "sqlite" if args.db is None else args.db.split(":", 1)[0], "create_s": round(created_s, 2), **figures}
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if not args.no_append:
        print(f"appended to {append_result('label_store_scaling', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
