"""bench/labeling_load.py: the exactly-once check catches what it must, and a tiny live run passes it."""

from __future__ import annotations

import asyncio

from tests.bench_scripts.scripts import load

lab = load("labeling_load")


def _store(tmp_path):
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path / 'labels.db'}")
    cid = svc.create_campaign("c", items=lab.item_rows(4, "c"), overlap=2)
    users = {name: svc.create_user(name, None, simulated=True) for name in ("u0", "u1")}
    return svc, cid, users


def test_verify_counts_lost_twice_confirmed_and_mismatched_judgments(tmp_path):
    svc, cid, users = _store(tmp_path)
    a0 = svc.next_assignment(users["u0"], cid)
    j0 = svc.submit_judgment(a0.id, users["u0"], choice="A", client_token="t0")
    a1 = svc.next_assignment(users["u1"], cid)
    j1 = svc.submit_judgment(a1.id, users["u1"], choice="B", client_token="t1")
    good = [lab.Submit("u0", a0.id, j0, 0.01), lab.Submit("u1", a1.id, j1, 0.02)]
    check = lab.verify(svc.engine, cid, 2, good, users)
    assert check == {"confirmed": 2, "stored": 2, "lost": 0, "confirmed_twice": 0, "duplicate_assignment": 0,
                     "duplicate_item_labeler": 0, "over_overlap": 0, "mismatched": 0, "stored_unconfirmed": 0,
                     "refused": 0}

    bad = [lab.Submit("u0", a0.id, j0, 0.01),
           lab.Submit("u0", a0.id, j0, 0.01),          # the same judgment confirmed to two clicks
           lab.Submit("u1", a0.id, j1, 0.01),          # confirmed for another assignment than it is stored under
           lab.Submit("u1", a1.id, j1 + 100, 0.01),    # confirmed but not in the store: lost
           lab.Submit("u1", a1.id, None, 0.01)]        # refused by the app
    check = lab.verify(svc.engine, cid, 2, bad, users)
    assert (check["lost"], check["confirmed_twice"], check["mismatched"], check["refused"]) == (1, 1, 1, 1)
    assert check["stored_unconfirmed"] == 0
    assert lab.figures(lab.LevelResult(2, 1.0, 0.0, bad), check)["exactly_once"] is False
    svc.close()


def test_percentiles_interpolate_between_order_statistics():
    xs = [0.4, 0.1, 0.3, 0.2, 0.5]
    assert lab.percentile(xs, 50) == 0.3
    assert abs(lab.percentile(xs, 95) - 0.48) < 1e-12  # 0.4 + 0.8 * (0.5 - 0.4)
    assert lab.percentile([], 95) is None


def test_tiny_live_run_stores_every_confirmed_judgment_exactly_once(tmp_path):
    """Three browsers against a real `rlhf label serve`, through the page's own submit event."""
    import httpx

    from ui.service import LabelService

    db_url = f"sqlite:///{tmp_path / 'labels.db'}"
    svc = LabelService.open(db_url)
    names = ["b0", "b1", "b2"]
    users = {n: svc.create_user(n, f"pw-{n}") for n in names}
    cid = svc.create_campaign("live", items=lab.item_rows(30, "live"), overlap=2)
    with lab.label_server(db_url, tmp_path / "server.log") as (url, pid):
        config = httpx.get(url + "config", cookies={"rlhf_session": svc.create_session(users["b0"])}, timeout=60).json()
        page = lab.Page.from_config(config)
        level = asyncio.run(lab._signed_in_level(url, page, "live", names, 3.0, 0.0, pid))
    check = lab.verify(svc.engine, cid, 2, level.submits, users)
    svc.close()
    assert not level.errors, level.errors[:3]
    assert check["confirmed"] >= 3 and check["refused"] == 0
    assert check["confirmed"] == check["stored"] and check["stored_unconfirmed"] == 0
    fig = lab.figures(level, check)
    assert fig["exactly_once"] and fig["p50_ms"] > 0 and fig["server_cpu_ms_per_submit"] > 0
