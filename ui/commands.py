"""`rlhf label`: the labeling app and its store from the command line.

    rlhf label serve --db sqlite:///labels.db --port 7860
    rlhf label add-user alice --role admin            # asks for the password
    rlhf label create-campaign round1 --from candidates.jsonl --overlap 3 --guidelines @guide.txt
    rlhf label create-campaign round1 --policy runs/x/sft --prompts prompts.jsonl --samples-per-prompt 4
    rlhf label progress round1
    rlhf label export round1 labels.jsonl --aggregation majority

Every subcommand takes --db (default: $RLHF_LABEL_DB, else sqlite:///labels.db).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from alignment.errors import UserError

DEFAULT_DB = "sqlite:///labels.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=os.environ.get("RLHF_LABEL_DB", DEFAULT_DB),
                    help="SQLAlchemy URL of the label store: sqlite:///path.db (default: $RLHF_LABEL_DB or "
                         f"{DEFAULT_DB}) or postgresql://user:pass@host/db")
    sub = parser.add_subparsers(dest="label_command", metavar="<subcommand>", required=True)

    p = sub.add_parser("serve", parents=[db], help="start the web app")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--path", default="/", help="URL path to serve the app under (default /)")
    p.add_argument("--root-path", default=None,
                   help="prefix a reverse proxy strips before forwarding (e.g. /labels)")
    p.add_argument("--concurrency", type=int, default=64, help="events handled at once (default 64)")

    p = sub.add_parser("add-user", parents=[db], help="create a user (asks for the password)")
    p.add_argument("name")
    p.add_argument("--role", choices=["labeler", "admin"], default="labeler")
    p.add_argument("--password", help="the password (visible in shell history: prefer the prompt or --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    p = sub.add_parser("set-password", parents=[db], help="set a user's password (asks for it)")
    p.add_argument("name")
    p.add_argument("--password")
    p.add_argument("--password-stdin", action="store_true")

    for name, what in (("deactivate", "block a user from signing in (their judgments stay)"),
                       ("activate", "let a deactivated user sign in again")):
        p = sub.add_parser(name, parents=[db], help=what)
        p.add_argument("name")

    sub.add_parser("users", parents=[db], help="list users")

    p = sub.add_parser("create-campaign", parents=[db],
                       help="import candidates (from a file or sampled from a policy) as a campaign")
    p.add_argument("name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="FILE",
                     help="candidate rows {prompt, responses, metadata, gold?}: .jsonl, .json, .parquet or a datasets folder")
    src.add_argument("--policy", metavar="CHECKPOINT", help="sample candidates from this policy checkpoint")
    p.add_argument("--prompts", metavar="FILE", help="with --policy: rows with 'prompt' (and 'metadata')")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="with --policy: K responses per prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mode", choices=["pairwise", "ranking"], default="pairwise")
    p.add_argument("--overlap", type=int, default=1, help="labelers per item (default 1)")
    p.add_argument("--guidelines", default="", help="guidelines text, or @file to read it from a file")
    p.add_argument("--gold", metavar="FILE", help="gold/honeypot rows: candidate rows with 'gold' (the expected answer)")
    p.add_argument("--pairs-per-prompt", type=int, default=None,
                   help="pairwise with K>2 responses: pairs drawn per prompt (default: all K(K-1)/2)")
    p.add_argument("--expiry-minutes", type=float, default=30.0,
                   help="an unanswered assignment is handed to someone else after this long (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed for pair sampling and gold placement")

    sub.add_parser("campaigns", parents=[db], help="list campaigns with their progress")

    for name, what in (("close", "stop handing out new items"), ("open", "reopen a closed campaign")):
        p = sub.add_parser(name, parents=[db], help=what)
        p.add_argument("campaign")

    p = sub.add_parser("progress", parents=[db], help="progress, speed, agreement, gold accuracy, position bias")
    p.add_argument("campaign")
    p.add_argument("--json", action="store_true", help="print the full statistics as JSON")

    p = sub.add_parser("export", parents=[db], help="write the labels as reward-model rows")
    p.add_argument("campaign")
    p.add_argument("output", help="file.jsonl, file.parquet, or a folder name without suffix (datasets)")
    p.add_argument("--aggregation", choices=["all", "majority"], default="all",
                   help="all: one row per judgment (default); majority: one row per item")
    p.add_argument("--min-gold-accuracy", type=float, default=None,
                   help="leave out labelers whose gold accuracy is below this")
    p.add_argument("--no-simulated", action="store_true", help="leave out simulated annotators")
    p.add_argument("--no-ai", action="store_true", help="leave out AI annotators (users of kind 'ai')")
    p.add_argument("--include-ties", action="store_true",
                   help="also write tie / both_bad judgments (rows with label 'tie' or 'both_bad')")
    p.add_argument("--include-gold", action="store_true", help="also export the gold items' judgments")


def _password(args) -> str:
    if args.password:
        return args.password
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\n")
    else:
        if not sys.stdin.isatty():
            raise UserError("no password: give --password, --password-stdin, or run in a terminal")
        pw = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != pw:
            raise UserError("the two passwords differ")
    if not pw:
        raise UserError("empty password")
    return pw


def _user(svc, name: str):
    user = svc.get_user_by_name(name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def main(args) -> int:
    from ui.service import LabelService

    svc = LabelService.open(args.db)
    try:
        return _COMMANDS[args.label_command](svc, args) or 0
    finally:
        svc.close()


def _serve(svc, args) -> int:
    import uvicorn
    from fastapi import FastAPI

    from ui.app import mount

    app = FastAPI(title="rlhf-toolkit labeling", docs_url=None, redoc_url=None, openapi_url=None)
    mount(app, svc, args.path, root_path=args.root_path, concurrency=args.concurrency)
    if not svc.list_users():
        print("rlhf label: no users yet: create an admin with `rlhf label add-user NAME --role admin --db ...`",
              file=sys.stderr)
    path = "/" + args.path.strip("/")
    print(f"rlhf label: serving {args.db} at http://{args.host}:{args.port}{path}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


def _add_user(svc, args) -> int:
    uid = svc.create_user(args.name, _password(args), role=args.role)
    print(f"created {args.role} {args.name!r} (id {uid})")
    return 0


def _set_password(svc, args) -> int:
    svc.set_password(_user(svc, args.name).id, _password(args))
    print(f"password of {args.name!r} changed")
    return 0


def _set_active(active: bool):
    def run(svc, args) -> int:
        svc.set_user_active(_user(svc, args.name).id, active)
        print(f"{args.name!r} {'activated' if active else 'deactivated'}")
        return 0
    return run


def _users(svc, args) -> int:
    print(f"{'id':>4}  {'name':<24} {'role':<8} {'kind':<9} active")
    for u in svc.list_users():
        print(f"{u.id:>4}  {u.name:<24} {u.role:<8} {u.kind:<9} {'yes' if u.active else 'no'}")
    return 0


def _create_campaign(svc, args) -> int:
    from ui.candidates import read_candidates, sample_candidates

    if args.policy:
        if not args.prompts:
            raise UserError("--policy needs --prompts FILE (rows with 'prompt')")
        from alignment.data.files import read_rows

        rows = sample_candidates(args.policy, read_rows(args.prompts), args.samples_per_prompt,
                                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 seed=args.seed, batch_size=args.batch_size)
    else:
        rows = read_candidates(args.source)
    guidelines = args.guidelines
    if guidelines.startswith("@"):
        path = Path(guidelines[1:])
        if not path.is_file():
            raise UserError(f"--guidelines: file not found: {path}")
        guidelines = path.read_text(encoding="utf-8")
    gold = read_candidates(args.gold) if args.gold else []
    for i, row in enumerate(gold):
        if "gold" not in row:
            raise UserError(f"{args.gold}: row {i + 1}: field 'gold': missing (the expected answer)")
    cid = svc.create_campaign(args.name, mode=args.mode, overlap=args.overlap, guidelines=guidelines, items=rows,
                              gold=gold, pairs_per_prompt=args.pairs_per_prompt,
                              assignment_ttl_s=args.expiry_minutes * 60, seed=args.seed)
    p = svc.progress(cid)
    print(f"created campaign {args.name!r} (id {cid}): {p['items']} items, {p['gold_items']} gold, "
          f"{args.mode}, overlap {args.overlap}")
    return 0


def _campaigns(svc, args) -> int:
    print(f"{'id':>4}  {'name':<28} {'mode':<9} {'overlap':>7} {'status':<7} {'items':>6} {'judgments':>9}  done")
    for c in svc.list_campaigns():
        p = svc.progress(c["id"])
        print(f"{c['id']:>4}  {c['name']:<28} {c['mode']:<9} {c['overlap']:>7} {c['status']:<7} {p['items']:>6} "
              f"{p['judgments']:>9}  {100 * p['fraction_done']:.0f}%")
    return 0


def _set_status(status: str):
    def run(svc, args) -> int:
        svc.set_campaign_status(svc.campaign_id(args.campaign), status)
        print(f"campaign {args.campaign!r} is {status}")
        return 0
    return run


def _fmt(v, pct=False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.0f}%" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _progress(svc, args) -> int:
    cid = svc.campaign_id(args.campaign)
    progress, quality = svc.progress(cid), svc.agreement(cid)
    if args.json:
        print(json.dumps({"progress": progress, "quality": quality}, indent=2, default=str))
        return 0
    p, q = progress, quality
    print(f"{p['campaign']}: {p['mode']}, overlap {p['overlap']}, {p['status']}")
    print(f"  items {p['items']} (+{p['gold_items']} gold), judgments {p['judgments']}/{p['target_judgments']} "
          f"({100 * p['fraction_done']:.0f}%), complete items {p['complete_items']}, skips {p['skips']}, "
          f"open assignments {p['active_assignments']}")
    print(f"  agreement {_fmt(q['pairwise_agreement'])}, Krippendorff's alpha {_fmt(q['krippendorff_alpha'])} "
          f"over {q['units_with_overlap']} units; gold accuracy {_fmt(q['gold_accuracy'])} ({q['gold_judgments']})")
    bias = q["position_bias"]
    if p["mode"] == "pairwise":
        print(f"  position bias: A chosen in {_fmt(bias['a_rate'], True)} of decisive votes (z {_fmt(bias['a_rate_z'])}); "
              f"tie {bias['tie']}, both bad {bias['both_bad']}")
    else:
        print(f"  position bias: A ranked first {_fmt(bias['top_a_rate'], True)} (unbiased {_fmt(bias['expected_rate'], True)})")
    print(f"  {'labeler':<20} {'judged':>6} {'skips':>5} {'med s':>6} {'/hour':>6} {'agree':>6} {'gold':>6} {'A rate':>6}")
    for name in sorted(set(p["labelers"]) | set(q["labelers"])):
        s, l = p["labelers"].get(name, {}), q["labelers"].get(name, {})
        print(f"  {name:<20} {s.get('judgments', 0):>6} {s.get('skips', 0):>5} {_fmt(s.get('median_s')):>6} "
              f"{_fmt(s.get('per_hour')):>6} {_fmt(l.get('agreement')):>6} {_fmt(l.get('gold_accuracy')):>6} "
              f"{_fmt(l.get('a_rate', l.get('top_a_rate'))):>6}")
    for name, a in sorted(q.get("ai", {}).items()):
        print(f"  AI {name}: agrees with humans {_fmt(a['agreement_human'])} ({a['pairs_human']} pairs), "
              f"with simulated {_fmt(a['agreement_simulated'])} ({a['pairs_simulated']}), gold "
              f"{_fmt(a['gold_accuracy'])} ({a['gold_judgments']}), ties {a['ties']}, "
              f"mean confidence {_fmt(a['mean_confidence'])}")
    return 0


def _export(svc, args) -> int:
    n = svc.export(svc.campaign_id(args.campaign), args.output, aggregation=args.aggregation,
                   min_gold_accuracy=args.min_gold_accuracy, include_simulated=not args.no_simulated,
                   include_ties=args.include_ties, include_gold=args.include_gold, include_ai=not args.no_ai)
    print(f"wrote {n} rows to {args.output}")
    return 0


_COMMANDS = {
    "serve": _serve, "add-user": _add_user, "set-password": _set_password, "deactivate": _set_active(False),
    "activate": _set_active(True), "users": _users, "create-campaign": _create_campaign, "campaigns": _campaigns,
    "close": _set_status("closed"), "open": _set_status("open"), "progress": _progress, "export": _export,
}
