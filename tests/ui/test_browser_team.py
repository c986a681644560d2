"""A labeling team's day in Debian's chromium, at a desktop width (1400 px) and a phone's (390 px).

A labeler judges 20 pairwise and 10 ranking items by keyboard alone; the answer controls are
in the window for every item without scrolling, and nothing overflows sideways. An admin
creates, watches, adjudicates and exports a campaign. Screenshots go to $RLHF_SCREENSHOTS
(default: the test's tmp_path)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.ui.conftest import ADMIN
from tests.ui.live import LiveServer
from tests.ui.test_browser import ARGS, CHROMIUM, item_id, judgments, press_and_wait, wait_note
from ui.service import LabelService

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": (1400, 900), "phone": (390, 844)}
LONG_MARKDOWN = ("## Plan\n\n1. read the input\n2. **reverse** it\n\n```python\ndef rev(s):\n    return s[::-1]\n```\n\n"
                 + "A long explanation that goes on. " * 120)
CONTROLS = ["rlhf-choice-A", "rlhf-choice-B", "rlhf-choice-tie", "rlhf-choice-both_bad", "rlhf-rank-submit",
            "rlhf-rank-back", "rlhf-skip", "rlhf-undo"] + [f"rlhf-rank-{c}" for c in "ABCDEFGH"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("RLHF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, server, name, password, size, query=""):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(server.url + query)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_selector("#rlhf-who")
    return page


def geometry(page) -> dict:
    """Where the visible answer controls and response boxes are, against the window."""
    return page.evaluate("""(ids) => {
      const box = el => { const r = el.getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]; };
      const controls = {};
      for (const id of ids) {
        const el = document.getElementById(id);
        if (el && el.offsetParent !== null && el.getClientRects().length) controls[id] = box(el);
      }
      const responses = [...document.querySelectorAll('.rlhf-response')].map(box);
      return {controls, responses, h: innerHeight, w: innerWidth, scrollY: scrollY,
              scrollW: document.documentElement.scrollWidth};
    }""", CONTROLS)


def assert_answerable_in_place(page, expect: set[str]) -> None:
    g = geometry(page)
    assert g["scrollY"] == 0, "the page scrolled"
    assert g["scrollW"] <= g["w"], f"the page is {g['scrollW']} px wide in a {g['w']} px window"
    assert expect <= set(g["controls"]), f"missing controls: {expect - set(g['controls'])}"
    for cid, (top, bottom, left, right) in g["controls"].items():
        assert 0 <= top and bottom <= g["h"] and 0 <= left and right <= g["w"], f"{cid} is outside the window"
    for top, bottom, left, right in g["responses"]:
        assert left >= 0 and right <= g["w"], "a response box overflows the window"


def response_boxes(page) -> tuple[list[float], list[float]]:
    return tuple(page.evaluate(f"() => {{ const r = document.querySelector('#rlhf-response-{x}').getBoundingClientRect();"
                               f" return [r.top, r.bottom, r.left, r.right]; }}") for x in "AB")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_labeler_judges_by_keyboard_without_scrolling(server, browser, shots, width):
    svc = server.svc
    name = f"kb-{width}"
    svc.create_user(name, "kb-password")
    pairs = [{"prompt": f"Reverse item {i}", "responses": [LONG_MARKDOWN, f"short answer {i}"]} for i in range(20)]
    ranks = [{"prompt": f"Rank item {i}", "responses": [f"first {i}", LONG_MARKDOWN, f"third {i}"]} for i in range(10)]
    svc.create_campaign(f"kb-pairs-{width}", items=pairs, overlap=1, guidelines="Prefer the correct answer.")
    svc.create_campaign(f"kb-rank-{width}", mode="ranking", items=ranks, overlap=1)
    page = open_page(browser, server, name, "kb-password", WIDTHS[width], f"?campaign=kb-pairs-{width}")
    page.wait_for_selector(".rlhf-item[data-assignment]")
    pair_controls = {"rlhf-choice-A", "rlhf-choice-B", "rlhf-choice-tie", "rlhf-choice-both_bad", "rlhf-skip", "rlhf-undo"}
    assert_answerable_in_place(page, pair_controls)
    # Rendered markdown: a heading and a code block, not their source.
    long_side = page.locator(".rlhf-response:has-text('A long explanation')").first
    assert long_side.locator(".rlhf-md h2").count() == 1 and long_side.locator(".rlhf-md pre code").count() == 1
    page.screenshot(path=str(shots / f"labeler-{width}-pairwise.png"))

    if width == "desktop":
        # L: side by side <-> stacked, by where the boxes are (not by a class name).
        a, b = response_boxes(page)
        assert abs(a[0] - b[0]) < 2 and b[2] >= a[3] - 1, "responses should start side by side"
        page.keyboard.press("l")
        a, b = response_boxes(page)
        assert b[0] >= a[1] - 1 and abs(a[2] - b[2]) < 2, "L should stack the responses"
        page.screenshot(path=str(shots / "labeler-desktop-stacked.png"))
        page.keyboard.press("l")
        a, b = response_boxes(page)
        assert abs(a[0] - b[0]) < 2, "L again should put them side by side"
        # M: the raw text instead of the rendering, and back.
        page.keyboard.press("m")
        assert long_side.locator(".rlhf-raw").is_visible() and not long_side.locator(".rlhf-md").is_visible()
        assert "```python" in long_side.locator(".rlhf-raw").inner_text()
        page.keyboard.press("m")
        assert long_side.locator(".rlhf-md").is_visible()

    keys = "1234"
    for n in range(20):
        aid = item_id(page)
        press_and_wait(page, keys[n % 4], "Saved ✓")
        (j,) = judgments(svc, "assignment_id = :a", a=aid)
        assert j["choice"] == ("A", "B", "tie", "both_bad")[n % 4]
        if n < 19:
            assert_answerable_in_place(page, pair_controls)
    wait_note(page, "Saved ✓")
    assert "Nothing left" in page.inner_text("#rlhf-item-box")

    page.goto(server.url + f"?campaign=kb-rank-{width}")
    page.wait_for_selector("#rlhf-rank-submit")
    rank_controls = {"rlhf-rank-A", "rlhf-rank-B", "rlhf-rank-C", "rlhf-rank-back", "rlhf-rank-submit", "rlhf-skip"}
    for n in range(10):
        assert_answerable_in_place(page, rank_controls)
        if n == 0:
            page.screenshot(path=str(shots / f"labeler-{width}-ranking.png"))
        aid = item_id(page)
        letters = ("b", "c", "a") if n % 2 else ("c", "a")  # every other one partial: its last stays unranked
        for key in letters:
            page.keyboard.press(key)
        shown = " > ".join(x.upper() for x in letters)
        page.wait_for_function("(v) => document.querySelector('#rlhf-rank textarea, #rlhf-rank input').value === v",
                               arg=shown)
        press_and_wait(page, "Enter", "Saved ✓")
        (j,) = judgments(svc, "assignment_id = :a", a=aid)
        assert j["ranking_shown"] == ">".join(x.upper() for x in letters)
        if len(letters) == 2:
            assert "B unranked" in page.inner_text("#rlhf-note")
    assert "Nothing left" in page.inner_text("#rlhf-item-box")
    page.screenshot(path=str(shots / f"labeler-{width}-done.png"))
    assert page.dialogs == []
    page.context.close()


def test_admin_before_any_campaign_sees_no_errors(browser, tmp_path, shots):
    """A fresh store: opening Admin shows an empty dashboard, not red Error pills."""
    db_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    svc = LabelService.open(db_url)
    svc.create_user("first-admin", "first-password", role="admin")
    live = LiveServer(db_url, tmp_path / "server.log").start()
    try:
        page = open_page(browser, live, "first-admin", "first-password", WIDTHS["desktop"])
        page.get_by_role("tab", name="Admin").click()
        page.wait_for_function("() => /No campaign yet/.test(document.querySelector('#rlhf-admin-cards').innerText)")
        page.wait_for_timeout(500)
        assert page.locator(".error, [data-testid='error']").count() == 0
        assert "Error" not in page.inner_text("body")
        page.screenshot(path=str(shots / "admin-empty.png"), full_page=True)
        page.context.close()
    finally:
        live.stop()
        svc.close()
