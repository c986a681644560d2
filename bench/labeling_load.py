"""Many simulated labelers against the live labeling app: judgments per second, submit latency, exactly-once.

    python bench/labeling_load.py                        # SQLite: 20, 50 and 100 labelers, 20 s each
    python bench/labeling_load.py --postgres             # then the same on a throwaway PostgreSQL
    python bench/labeling_load.py --labelers 50 --duration 30 --no-append

Starts `rlhf label serve` on 127.0.0.1 with a fresh store (a new SQLite file; with
--postgres also a new cluster from Debian's postgresql, in a temporary folder, on a free
loopback port), creates users and one pairwise campaign per level (overlap 2), signs every
labeler in through the login form, and then has them all click "A is better" as fast as the
app answers, for a bounded time. Each click takes the path a browser's click takes: the
button's own Gradio event (`submit_A`, private to the page) joins the queue over HTTP and its
result streams back over server-sent events; the result is the next item plus the note
"Saved ✓ judgment N", which is what tells a labeler the judgment is stored. The latency of a
submit is from sending the click to receiving that result.

After each level the store is checked: every confirmed judgment is stored exactly once, for
the labeler and assignment that submitted it; no assignment and no (item, labeler) pair has
two judgments; no item has more judgments than its overlap. All traffic stays on loopback,
every request has a timeout, and every loop stops at its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

SAVED = re.compile(r"Saved ✓ judgment (\d+)")
REQUEST_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the servers
@contextlib.contextmanager
def label_server(db_url: str, log_path: Path, concurrency: Optional[int] = None,
                 timeout_s: float = 180) -> Iterator[tuple[str, int]]:
    """`rlhf label serve` on 127.0.0.1 in a child process; yields (base URL, pid), always stops it."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "alignment.cli", "label", "serve", "--db", db_url, "--host", "127.0.0.1",
           "--port", str(port)] + (["--concurrency", str(concurrency)] if concurrency else [])
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        deadline = time.time() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"label server exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(url + "healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"label server did not answer in {timeout_s:.0f}s; see {log_path}")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


def _pg_bin(name: str) -> Optional[str]:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else None)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A new PostgreSQL cluster in a temporary folder on a free loopback port; yields a database URL.

    Debian's postgresql refuses to run as root, so as root it runs as the `postgres` user.
    The cluster is stopped and its folder removed on exit.
    """
    from sqlalchemy import create_engine, text

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="rlhf-bench-pg-")
    if as_user:
        shutil.chown(root, "postgres")
    data, port = os.path.join(root, "data"), free_port()
    started = False
    try:
        subprocess.run(as_user + [initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run(as_user + [pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "start", "-o",
                                  f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300"],
                       check=True, capture_output=True)
        started = True
        server = f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
        admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "labels_bench"'))
        admin.dispose()
        yield f"{server}/labels_bench"
    finally:
        if started:
            subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- a browser, over HTTP
@dataclass
class Page:
    """What a browser learns from the page config: which events its buttons fire."""

    on_load: int
    load_item: int
    submit_a: int
    button_a: int
    outputs: list[str]
    """elem_id of each output of the labeler's view, in order."""

    @classmethod
    def from_config(cls, config: dict) -> "Page":
        components = {c["id"]: c for c in config["components"]}
        by_elem = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c.get("props")}
        deps = config["dependencies"]
        on_load = next(d for d in deps if d.get("backend_fn") and any(t[1] == "load" for t in d["targets"]))
        then = next(d for d in deps if d["id"] == on_load["id"] + 1)  # .then(load_item), chained on page load
        button = by_elem["rlhf-choice-A"]
        submit = next(d for d in deps if d.get("backend_fn") and [button, "click"] in d["targets"])
        return cls(on_load["id"], then["id"], submit["id"], button,
                   [components[i]["props"].get("elem_id") for i in submit["outputs"]])


class Browser:
    """One labeler's browser: a cookie session and a Gradio session, speaking Gradio's queue protocol."""

    def __init__(self, client, page: Page, campaign: str):
        self.client, self.page, self.campaign = client, page, campaign
        self.session_hash = uuid.uuid4().hex[:12]
        self.view: dict = {}

    async def event(self, fn_index: int, data: list, trigger: Optional[int] = None) -> list:
        """Join the queue with one event and read its result from the event stream."""
        join = await self.client.post("gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": self.session_hash, "event_data": None,
            "trigger_id": trigger})
        join.raise_for_status()
        event_id = join.json()["event_id"]
        async with self.client.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session_hash}) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    if not msg.get("success"):
                        raise RuntimeError(f"event failed: {str(msg.get('output'))[:200]}")
                    return msg["output"]["data"]
                if msg.get("msg") in ("close_stream", "unexpected_error"):
                    raise RuntimeError(f"stream ended without a result: {msg}")
        raise RuntimeError("event stream closed without a result")

    async def open(self) -> None:
        """The page load: sign-in state and campaign list, then the first item."""
        await self.event(self.page.on_load, [])
        self.view = dict(zip(self.page.outputs, await self.event(self.page.load_item, [self.campaign])))

    @property
    def assignment(self) -> Optional[int]:
        aid = self.view.get("rlhf-aid") or ""
        return int(aid) if str(aid).isdigit() else None

    async def click_a(self, elapsed_s: float) -> Optional[int]:
        """Click "A is better"; the judgment id the app confirmed, or None if it refused."""
        data = [self.campaign, self.view.get("rlhf-aid", ""), self.view.get("rlhf-token", ""), "", elapsed_s]
        self.view = dict(zip(self.page.outputs, await self.event(self.page.submit_a, data, self.page.button_a)))
        found = SAVED.search(self.view.get("rlhf-progress-box") or "")
        return int(found.group(1)) if found else None


async def sign_in(base_url: str, name: str, password: str):
    import httpx

    client = httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S,
                               limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))
    r = await client.post("auth/login", data={"username": name, "password": password, "next": "/"})
    if r.status_code != 303 or "rlhf_session" not in client.cookies:
        await client.aclose()
        raise RuntimeError(f"sign-in of {name} failed ({r.status_code})")
    return client


# ----------------------------------------------------------------------------- one level
@dataclass
class Submit:
    user: str
    assignment: int
    judgment: Optional[int]
    latency_s: float


@dataclass
class LevelResult:
    labelers: int
    duration_s: float
    think_s: float
    submits: list[Submit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exhausted: int = 0
    """Labelers who ran out of items before the deadline."""
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


async def run_level(clients: dict, page: Page, campaign: str, duration_s: float, think_s: float,
                    server_pid: Optional[int] = None, seed: int = 0) -> LevelResult:
    """Every labeler opens the page, then reads (think time) and clicks until the deadline.

    Think time is exponential with mean `think_s` (0: click again as soon as the result is
    back, which measures the app's capacity rather than what labelers would see). The first
    click of each labeler also waits one think time, so that they do not all click at once.
    """
    import psutil

    browsers = {name: Browser(client, page, campaign) for name, client in clients.items()}
    await asyncio.gather(*(b.open() for b in browsers.values()))
    result = LevelResult(len(browsers), duration_s, think_s)
    rng = random.Random(seed)
    server = psutil.Process(server_pid) if server_pid else None
    server_cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    client_cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration_s

    async def labeler(name: str, browser: Browser) -> None:
        while True:
            if think_s > 0:
                await asyncio.sleep(min(rng.expovariate(1 / think_s), max(deadline - time.perf_counter(), 0)))
            if time.perf_counter() >= deadline:
                return
            aid = browser.assignment
            if aid is None:
                result.exhausted += 1
                return
            t0 = time.perf_counter()
            try:
                judgment = await browser.click_a(elapsed_s=1.0)
            except Exception as err:  # counted and reported; the labeler reloads the page and goes on
                result.errors.append(f"{name}: {type(err).__name__}: {err}"[:300])
                try:
                    await browser.open()
                except Exception as err2:
                    result.errors.append(f"{name}: reload: {type(err2).__name__}: {err2}"[:300])
                    return
                continue
            result.submits.append(Submit(name, aid, judgment, time.perf_counter() - t0))

    # bounded: the deadline stops new clicks; a click in flight gets REQUEST_TIMEOUT_S more at most
    tasks = [asyncio.create_task(labeler(n, b)) for n, b in browsers.items()]
    done, pending = await asyncio.wait(tasks, timeout=duration_s + REQUEST_TIMEOUT_S + 10)
    for t in pending:
        t.cancel()
        result.errors.append("a labeler was still waiting after the deadline and was cancelled")
    result.duration_s = time.perf_counter() - start
    result.server_cpu_s = sum(server.cpu_times()[:2]) - server_cpu0 if server else 0.0
    result.client_cpu_s = time.process_time() - client_cpu0
    return result


def verify(engine, campaign_id: int, overlap: int, submits: list[Submit], user_ids: dict[str, int]) -> dict:
    """Every confirmed judgment stored exactly once, for its labeler and assignment; no duplicates."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, assignment_id, item_id, user_id FROM judgments "
            "WHERE campaign_id = :c AND retracted_at IS NULL"), {"c": campaign_id}).all()
    stored = {r.id: r for r in rows}
    confirmed = [s for s in submits if s.judgment is not None]
    confirmed_ids = Counter(s.judgment for s in confirmed)
    lost = [s.judgment for s in confirmed if s.judgment not in stored]
    mismatched = [s.judgment for s in confirmed if s.judgment in stored and
                  (stored[s.judgment].assignment_id != s.assignment or stored[s.judgment].user_id != user_ids[s.user])]
    per_item = Counter(r.item_id for r in rows)
    return {
        "confirmed": len(confirmed),
        "stored": len(rows),
        "lost": len(lost),
        "confirmed_twice": sum(n - 1 for n in confirmed_ids.values() if n > 1),
        "duplicate_assignment": len(rows) - len({r.assignment_id for r in rows}),
        "duplicate_item_labeler": len(rows) - len({(r.item_id, r.user_id) for r in rows}),
        "over_overlap": sum(1 for n in per_item.values() if n > overlap),
        "mismatched": len(mismatched),
        "stored_unconfirmed": len(set(stored) - set(confirmed_ids)),
        "refused": sum(1 for s in submits if s.judgment is None),
    }


def percentile(values: list[float], q: float) -> Optional[float]:
    """The q-th percentile (0-100), linear between order statistics; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def figures(level: LevelResult, check: dict) -> dict:
    latencies = [s.latency_s for s in level.submits]
    ok = check["lost"] == check["confirmed_twice"] == check["duplicate_assignment"] == \
        check["duplicate_item_labeler"] == check["over_overlap"] == check["mismatched"] == 0
    return {
        "labelers": level.labelers, "think_s": level.think_s, "duration_s": round(level.duration_s, 2),
        "submits": len(level.submits),
        "server_cpu_ms_per_submit": round(1000 * level.server_cpu_s / len(level.submits), 1) if level.submits else None,
        "server_cpu_share": round(level.server_cpu_s / level.duration_s, 3) if level.duration_s else None,
        "client_cpu_share": round(level.client_cpu_s / level.duration_s, 3) if level.duration_s else None,
        "judgments_per_s": check["confirmed"] / level.duration_s if level.duration_s else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)), "p95_ms": _ms(percentile(latencies, 95)),
        "p99_ms": _ms(percentile(latencies, 99)), "mean_ms": _ms(statistics.fmean(latencies) if latencies else None),
        "max_ms": _ms(max(latencies) if latencies else None), "errors": len(level.errors),
        "exhausted": level.exhausted, "exactly_once": ok, **check,
    }


def _ms(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x * 1000, 1)


# ----------------------------------------------------------------------------- a backend, all levels
def item_rows(n: int, prefix: str) -> list[dict]:
    """Pairwise items with responses of a realistic few hundred characters."""
    body = "The answer, with its reasoning written out over a few sentences. " * 4
    return [{"prompt": f"{prefix} prompt {i}: say something useful.",
             "responses": [f"{body}(first {i})", f"{body}(second {i})"], "metadata": {"i": i}} for i in range(n)]


def run_backend(db_url: str, levels: list[int], duration_s: float, think_s: float, items_per_labeler: int,
                work_dir: Path, concurrency: Optional[int] = None, label: str = "sqlite") -> list[dict]:
    """Users, then for each level a fresh campaign and a timed run against one live server."""
    import httpx
    from ui.service import LabelService

    svc = LabelService.open(db_url)
    try:
        names = [f"labeler{i:03d}" for i in range(max(levels))]
        user_ids = {name: svc.create_user(name, f"pw-{name}") for name in names}
        with label_server(db_url, work_dir / f"server-{label}.log", concurrency) as (url, pid):
            config = httpx.get(url + "config", timeout=REQUEST_TIMEOUT_S,
                               cookies={"rlhf_session": svc.create_session(user_ids[names[0]])}).json()
            page = Page.from_config(config)
            results = []
            for n in levels:
                name = f"load-{label}-{n}"
                overlap = 2
                cid = svc.create_campaign(name, items=item_rows(max(n * items_per_labeler // overlap, 1), name),
                                          overlap=overlap)
                level = asyncio.run(_signed_in_level(url, page, name, names[:n], duration_s, think_s, pid))
                check = verify(svc.engine, cid, overlap, level.submits, user_ids)
                fig = {"store": label, **figures(level, check)}
                results.append(fig)
                print(_line(fig), flush=True)
                for err in level.errors[:5]:
                    print(f"    error: {err}", flush=True)
            return results
    finally:
        svc.close()


async def _signed_in_level(url: str, page: Page, campaign: str, names: list[str], duration_s: float,
                           think_s: float, server_pid: Optional[int]) -> LevelResult:
    sem = asyncio.Semaphore(8)  # sign-in runs scrypt on the server: not all at once

    async def one(name):
        async with sem:
            return name, await sign_in(url, name, f"pw-{name}")

    clients = dict(await asyncio.gather(*(one(n) for n in names)))
    try:
        return await run_level(clients, page, campaign, duration_s, think_s, server_pid, seed=len(names))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients.values()))


def _line(f: dict) -> str:
    verdict = "exactly once" if f["exactly_once"] else "VIOLATED"
    return (f"{f['store']:>8} {f['labelers']:>4} labelers, think {f['think_s']:g} s: "
            f"{f['judgments_per_s']:6.1f} judgments/s, "
            f"submit p50 {f['p50_ms']} ms  p95 {f['p95_ms']} ms  p99 {f['p99_ms']} ms  "
            f"({f['confirmed']} confirmed, {f['lost']} lost, {f['duplicate_assignment'] + f['duplicate_item_labeler']} "
            f"duplicated, {f['refused']} refused, {f['errors']} errors: {verdict}; "
            f"server CPU {f['server_cpu_ms_per_submit']} ms per submit)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelers", default="20,50,100", help="comma-separated concurrency levels")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of clicking per level")
    parser.add_argument("--think", default="5",
                        help="mean seconds a labeler reads before each click (exponential); comma-separated to run "
                             "several, e.g. 5,0 (0: click as soon as the result is back: the app's capacity)")
    parser.add_argument("--items-per-labeler", type=int, default=30,
                        help="campaign size per level, in judgment slots per labeler (overlap 2)")
    parser.add_argument("--postgres", action="store_true", help="also run on a throwaway PostgreSQL cluster")
    parser.add_argument("--concurrency", type=int, default=None, help="the server's --concurrency (default: its own)")
    parser.add_argument("--no-append", action="store_true", help="do not append to bench/results/")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.labelers.split(",") if x.strip()]
    thinks = [float(x) for x in args.think.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        print("--labelers: give positive counts, e.g. 20,50,100", file=sys.stderr)
        return 2

    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores", flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-labels-") as tmp:
        work = Path(tmp)
        for think in thinks:
            results += run_backend(f"sqlite:///{work / f'labels-{think:g}.db'}", levels, args.duration, think,
                                   args.items_per_labeler, work, args.concurrency, "sqlite")
        if args.postgres:
            try:
                for think in thinks:
                    with throwaway_postgres() as pg_url:
                        results += run_backend(pg_url, levels, args.duration, think, args.items_per_labeler, work,
                                               args.concurrency, "postgres")
            except (RuntimeError, subprocess.CalledProcessError) as err:
                print(f"postgres: skipped ({err})", file=sys.stderr)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
    if not args.no_append:
        from results import append_result

        path = append_result("labeling_load", {
            "duration_s": args.duration, "levels": levels, "think_s": thinks,
            "load_average": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in load_after], "results": results})
        print(f"appended to {path}")
    return 0 if all(r["exactly_once"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
