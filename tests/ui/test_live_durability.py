"""Many labelers at once against the live server, and a SIGKILL in the middle of a campaign."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import text

from tests.ui.conftest import pair_rows
from tests.ui.live import api_client, api_token

N_LABELERS = 20


def _labelers(server, prefix: str, n: int) -> list:
    """n signed-in API clients (users made here, signed in through the server)."""
    names = [f"{prefix}{i}" for i in range(n)]
    threads = [threading.Thread(target=server.svc.create_user, args=(name, f"pw-{name}")) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clients: dict[str, object] = {}

    def connect(name):
        clients[name] = api_client(server.url, api_token(server.url, name, f"pw-{name}"))

    threads = [threading.Thread(target=connect, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [(name, clients[name]) for name in names]


def _label_until_done(client, campaign: str, confirmed: list, errors: list, stop: threading.Event | None = None,
                      double_submit: bool = False) -> None:
    while stop is None or not stop.is_set():
        try:
            item = client.predict(campaign=campaign, api_name="/next_item")
            if item is None:
                return
            kwargs = dict(assignment_id=item["id"], choice="A" if item["id"] % 2 else "B",
                          client_token=item["token"], api_name="/submit")
            result = client.predict(**kwargs)
            if double_submit:  # the same click twice: must not make a second judgment
                assert client.predict(**kwargs) == result
            confirmed.append((item["id"], result["judgment_id"]))
        except Exception as err:  # collected, asserted on by the test
            errors.append(err)
            return


def _judgments(svc, campaign_id: int) -> list[tuple]:
    with svc.engine.connect() as conn:
        return conn.execute(text(
            "SELECT j.id, j.assignment_id, j.item_id, j.user_id FROM judgments j "
            "WHERE j.campaign_id = :c AND j.retracted_at IS NULL"), {"c": campaign_id}).all()


def test_twenty_labelers_at_once(server):
    # 32 slots for 20 labelers: the first wave has every labeler holding an item and submitting at once
    cid = server.svc.create_campaign("live-concurrent", items=pair_rows(16), overlap=2)
    labelers = _labelers(server, "conc", N_LABELERS)
    confirmed: list[tuple[int, int]] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(N_LABELERS)

    def run(client, double):
        barrier.wait()
        _label_until_done(client, "live-concurrent", confirmed, errors, double_submit=double)

    threads = [threading.Thread(target=run, args=(client, i % 4 == 0)) for i, (_, client) in enumerate(labelers)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.time() - t0
    assert not errors, errors[:3]

    rows = _judgments(server.svc, cid)
    assert len(confirmed) == 16 * 2 == len(rows), "every item judged by exactly `overlap` labelers"
    # every confirmed judgment is in the store exactly once
    assert sorted(j for _, j in confirmed) == sorted(r.id for r in rows)
    assert len({r.assignment_id for r in rows}) == len(rows)
    per_item = Counter(r.item_id for r in rows)
    assert set(per_item.values()) == {2}, "no item beyond its overlap"
    assert len({(r.item_id, r.user_id) for r in rows}) == len(rows), "nobody judged an item twice"
    print(f"\n{N_LABELERS} labelers, {len(rows)} judgments in {elapsed:.1f}s "
          f"({len(rows) / elapsed:.1f} judgments/s through the API)")


def test_sigkill_mid_campaign_loses_nothing_confirmed(server, admin_client):
    cid = server.svc.create_campaign("live-kill", items=pair_rows(12), overlap=2)
    labelers = _labelers(server, "kill", 4)
    confirmed: list[tuple[int, int]] = []
    errors: list[Exception] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_label_until_done, args=(client, "live-kill", confirmed, errors, stop))
               for _, client in labelers]
    for t in threads:
        t.start()
    deadline = time.time() + 120
    while len(confirmed) < 8 and time.time() < deadline and not errors:
        time.sleep(0.02)
    assert len(confirmed) >= 8, errors[:3]
    try:
        server.kill()  # mid-campaign: labelers are submitting right now
        stop.set()
        for t in threads:
            t.join(timeout=60)
        seen = list(confirmed)
        stored = {r.id for r in _judgments(server.svc, cid)}
        assert {j for _, j in seen} <= stored, "a confirmed judgment was lost"
    finally:
        server.start()

    # After the restart the same sessions work (they live in the database) and labeling resumes.
    confirmed_after: list[tuple[int, int]] = []
    errors.clear()
    threads = [threading.Thread(target=_label_until_done, args=(client, "live-kill", confirmed_after, errors))
               for _, client in labelers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    rows = _judgments(server.svc, cid)
    assert {j for _, j in seen} <= {r.id for r in rows}
    per_item = Counter(r.item_id for r in rows)
    assert len(per_item) == 12 and set(per_item.values()) == {2}
    assert admin_client.predict(campaign="live-kill", api_name="/admin_progress")["fraction_done"] == 1.0
