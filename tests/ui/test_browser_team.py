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
from tests.ui.test_browser import item_id, sign_in, judgments, press_and_wait, upload_file, wait_note
from ui.service import LabelService

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": (1400, 900), "phone": (390, 844)}
LONG_MARKDOWN = ("## Plan\n\n1. read the input\n2. **reverse** it\n\n```python\ndef rev(s):\n    return s[::-1]\n```\n\n"
                 + "A long explanation that goes on. " * 120)
CONTROLS = ["rlhf-choice-A", "rlhf-choice-B", "rlhf-choice-tie", "rlhf-choice-both_bad", "rlhf-rank-submit",
            "rlhf-rank-back", "rlhf-skip", "rlhf-undo"] + [f"rlhf-rank-{c}" for c in "ABCDEFGH"]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("RLHF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, server, name, password, size, query=""):
    return sign_in(browser, server, name, password, query, size)


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


def rows_file(path: Path, rows: list[dict], bad_line: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if bad_line is not None:
        lines.insert(bad_line - 1, json.dumps({"prompt": "x", "responses": "not a list"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def clear_file(page, selector: str) -> None:
    """Empty a File component with its Clear button, so that another file can be chosen."""
    page.click(selector + " button[aria-label=Clear]")
    page.wait_for_selector(selector + " input[type=file]", state="attached", timeout=10_000)


def value_of(page, selector: str) -> str:
    return page.locator(selector).first.input_value()


def wait_value(page, selector: str, pattern: str) -> None:
    page.wait_for_function("([s, p]) => { const e = document.querySelector(s); return e && new RegExp(p).test(e.value); }",
                           arg=[selector, pattern])


def test_admin_creates_watches_adjudicates_and_exports(server, browser, shots, tmp_path):
    from tests.ui.test_browser import MD_HTML, NO_LIVE_MARKUP, PAYLOADS

    svc = server.svc
    camp = '<img src=x onerror="window.__xss=20">round'
    cands = rows_file(tmp_path / "candidates.jsonl",
                      [{"prompt": f"q{i}", "responses": [f"q{i}-r0", f"q{i}-r1"]} for i in range(4)])
    gold = rows_file(tmp_path / "gold-items.jsonl", [{"prompt": "g", "responses": ["right", "wrong"], "gold": 0}])
    bad = rows_file(tmp_path / "bad.jsonl", [{"prompt": "ok", "responses": ["a", "b"]}] * 3, bad_line=3)
    admin_id = svc.user_id(ADMIN[0])

    def admin_assignments() -> int:
        with svc.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM assignments WHERE user_id = :u"), {"u": admin_id}).scalar()

    before = admin_assignments()  # other tests' API calls may have asked for items as this admin
    page = open_page(browser, server, *ADMIN, WIDTHS["desktop"])

    # (1) An admin on the Label tab is given nothing until they ask for it.
    page.wait_for_timeout(1000)
    assert admin_assignments() == before
    label_campaign = value_of(page, "#rlhf-campaign input")
    if label_campaign and before == 0:
        assert page.locator("#rlhf-start").is_visible()

    # (7) Admin's campaign starts as the Label tab's.
    page.get_by_role("tab", name="Admin").click()
    page.wait_for_selector("#rlhf-dashboard-cards")
    assert value_of(page, "#rlhf-admin-campaign input") == label_campaign

    # (4) A duplicate user name: the message says so; the table and the form stay.
    page.get_by_role("tab", name="Users").click()
    # Each click waits for its own answer: under load a fixed pause let the second click land while
    # the first was pending (Gradio drops it) or the first's reply clear the form after the refill.
    for expected in ("Created labeler 'dup-user'", "already exists"):
        page.fill("#rlhf-new-user-name textarea, #rlhf-new-user-name input", "dup-user")
        page.fill("#rlhf-new-user-password input", "dup-password")
        page.click("#rlhf-admin-create-user")
        wait_value(page, "#rlhf-admin-user-msg textarea", expected)
    assert "dup-user" in page.inner_text("#rlhf-admin-users") and "Error" not in page.inner_text("#rlhf-admin-users")
    assert page.locator("#rlhf-new-user-password input").is_visible()

    # (4) A malformed upload: its own name, a 1-based line; the campaigns table stays.
    page.get_by_role("tab", name="Campaigns").click()
    page.fill("#rlhf-new-campaign-name textarea, #rlhf-new-campaign-name input", "never-created")
    upload_file(page, "#rlhf-new-campaign-file", bad)
    page.click("#rlhf-admin-create")
    wait_value(page, "#rlhf-admin-campaign-msg textarea", "line 3")
    message = value_of(page, "#rlhf-admin-campaign-msg textarea")
    assert "bad.jsonl: line 3: field 'responses'" in message and "/tmp" not in message and "gradio" not in message
    assert "Error" not in page.inner_text("#rlhf-admin-campaigns")
    page.screenshot(path=str(shots / "admin-upload-error.png"), full_page=True)

    # Create: candidates and a gold file of its own, overlap 2.
    page.fill("#rlhf-new-campaign-name textarea, #rlhf-new-campaign-name input", camp)
    page.fill("#rlhf-new-campaign-overlap input", "2")
    clear_file(page, "#rlhf-new-campaign-file")
    upload_file(page, "#rlhf-new-campaign-file", cands)
    upload_file(page, "#rlhf-new-campaign-gold", gold)
    page.click("#rlhf-admin-create")
    wait_value(page, "#rlhf-admin-campaign-msg textarea", "Created campaign .*4 items, 1 gold")
    cid = svc.campaign_id(camp)
    assert svc.get_campaign(cid)["overlap"] == 2

    # (6) Set status starts at the campaign's status: clicking it closes nothing.
    page.locator("#rlhf-admin-campaign input").click()
    page.get_by_role("option", name=camp, exact=True).click()
    page.wait_for_function("() => document.querySelector('#rlhf-admin-status-choice input[value=open]')?.checked"
                           " || [...document.querySelectorAll('#rlhf-admin-status-choice input')].some("
                           "i => i.checked && i.closest('label').innerText.trim() === 'open')")
    page.click("#rlhf-admin-status")
    wait_value(page, "#rlhf-admin-campaign-msg textarea", "already open")
    assert svc.get_campaign(cid)["status"] == "open"

    # Labelers work (through the store, as simulated annotators do): they disagree on q0, bob fails gold.
    ann = svc.create_user('<svg onload="window.__xss=21">ann', None, simulated=True)
    bob = svc.create_user("bob-team", None, simulated=True)
    for uid in (ann, bob):
        while (a := svc.next_assignment(uid, cid)) is not None:
            if a.responses[0] in ("right", "wrong"):
                pick = a.responses.index("right" if uid == ann else "wrong")
                rationale = ""
            else:
                wanted = "r1" if (uid == bob and a.prompt == "q0") else "r0"
                pick = next(i for i, t in enumerate(a.responses) if t.endswith(wanted))
                rationale = (PAYLOADS[1] if uid == ann else MD_HTML) if a.prompt == "q0" else ""
            svc.submit_judgment(a.id, uid, choice="AB"[pick], rationale=rationale)
    carol = svc.create_user("carol-team", None, simulated=True)
    holding = svc.next_assignment(carol, cid)  # the gold item, held and not answered

    # Watch: the dashboard.
    page.get_by_role("tab", name="Dashboard").click()
    page.click("#rlhf-admin-refresh")
    page.wait_for_function("() => /Krippendorff/i.test(document.querySelector('#rlhf-admin-cards').innerText)"
                           " && /z = /.test(document.querySelector('#rlhf-admin-cards').innerText)")
    page.wait_for_function("() => document.querySelector('#rlhf-admin-labelers').innerText.includes('bob-team')")
    assert "svg onload" in page.inner_text("#rlhf-admin-labelers")
    page.screenshot(path=str(shots / "admin-dashboard.png"), full_page=True)

    # Held items: carol's, released.
    page.get_by_role("tab", name="Held items").click()
    page.click("#rlhf-admin-held-refresh")
    page.wait_for_function("() => document.querySelector('#rlhf-admin-held').innerText.includes('carol-team')")
    page.fill("#rlhf-admin-release-id textarea, #rlhf-admin-release-id input", str(holding.id))
    page.click("#rlhf-admin-release")
    wait_value(page, "#rlhf-admin-held-msg textarea", f"Released assignment {holding.id}")
    with svc.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM assignments WHERE id = :a"), {"a": holding.id}).scalar() == "released"

    # Review: both sides' rationales (inert), then a final label.
    page.get_by_role("tab", name="Review").click()
    page.click("#rlhf-admin-review-refresh")
    page.wait_for_selector(".rlhf-case")
    review = page.inner_text("#rlhf-admin-review")
    assert PAYLOADS[1] in review and '<b onmouseover="window.__xss=9">' in review and "failed gold" in review.lower()
    assert page.evaluate(NO_LIVE_MARKUP, "#rlhf-admin-review") == 0
    (q0,) = [c for c in svc.review_items(cid) if c["prompt"] == "q0"]
    page.fill("#rlhf-review-item textarea, #rlhf-review-item input", str(q0["item_id"]))
    page.fill("#rlhf-review-final textarea, #rlhf-review-final input", "1")
    page.fill("#rlhf-review-why textarea, #rlhf-review-why input", "<script>window.__xss=22</script> r0 is right")
    page.click("#rlhf-review-adjudicate")
    wait_value(page, "#rlhf-review-msg textarea", "final label '1' stored")
    page.wait_for_function("(i) => /Final label by/.test(document.querySelector('#rlhf-case-' + i).innerText)",
                           arg=q0["item_id"])
    page.screenshot(path=str(shots / "admin-review.png"), full_page=True)

    # Audit log: every entry, with names.
    page.get_by_role("tab", name="Audit log").click()
    page.click("#rlhf-admin-audit-refresh")
    page.wait_for_function("() => document.querySelector('#rlhf-admin-audit').innerText.includes('adjudicate')")
    audit = page.inner_text("#rlhf-admin-audit")
    assert "login" in audit and "create user" in audit and "dup-user" in audit and ADMIN[0] in audit
    assert "release" in audit and "{" not in audit
    page.screenshot(path=str(shots / "admin-audit.png"), full_page=True)

    # Export, majority: the adjudication wins q0.
    page.get_by_role("tab", name="Export").click()
    page.get_by_label("majority", exact=True).check()
    page.click("#rlhf-admin-export")
    wait_value(page, "#rlhf-admin-export-msg textarea", r"Exported \d+ rows \(majority\)")
    href = page.locator("#rlhf-admin-export-file a").first.get_attribute("href")
    response = page.request.get(href if href.startswith("http") else server.url + href.lstrip("/"))
    rows = [json.loads(line) for line in response.text().splitlines() if line.strip()]
    by_prompt = {r["prompt"]: r for r in rows}
    assert by_prompt["q0"]["judgment_kind"] == "adjudication" and by_prompt["q0"]["chosen"] == "q0-r0"
    assert by_prompt["q0"]["labeler"] == ADMIN[0] and not by_prompt["q0"]["is_gold"]
    assert {by_prompt[f"q{i}"]["judgment_kind"] for i in (1, 2, 3)} == {"label"}
    page.screenshot(path=str(shots / "admin-export.png"), full_page=True)
    assert page.evaluate("window.__xss") is None and page.dialogs == []
    page.context.close()
