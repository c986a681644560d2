"""bench/label_store_scaling.py: it judges every slot of the campaign exactly once and times both ends."""

from __future__ import annotations

from tests.bench_scripts.scripts import load

scaling = load("label_store_scaling")


def test_every_slot_is_judged_and_both_windows_are_timed(tmp_path):
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path / 'bench.db'}")
    try:
        cid = svc.create_campaign("c", items=scaling.pair_rows(12), overlap=2)
        users = [svc.ensure_user(f"u{k}") for k in range(3)]
        figures = scaling.label_until_done(svc, cid, users, window=5)
        progress = svc.progress(cid)
    finally:
        svc.close()
    assert figures["judgments"] == 24 == progress["judgments"]
    assert progress["complete_items"] == 12
    assert figures["start_per_s"] > 0 and figures["end_per_s"] > 0


def test_a_campaign_smaller_than_two_windows_is_refused(tmp_path):
    import pytest
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path / 'bench.db'}")
    try:
        cid = svc.create_campaign("c", items=scaling.pair_rows(6), overlap=1)
        with pytest.raises(SystemExit, match="only 6 judgments"):
            scaling.label_until_done(svc, cid, [svc.ensure_user("u")], window=4)
    finally:
        svc.close()
