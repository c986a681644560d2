"""What a labeler sees, as HTML in which everything a model or a user wrote is inert text.

Guidelines and names are escaped (HTML specials, and `$ { } \\` and backtick too, so that no
template engine on the page can read them as code). Prompts and responses come twice: rendered
as sanitised markdown (`ui.markup`: never live HTML) and as the raw text in a `<pre>`-like block
that keeps whitespace; the `M` key switches between the two. Both wrap long lines and scroll
inside their box, never truncated. Multi-turn prompts show every turn with its role.
"""

from __future__ import annotations

import html
from typing import Any

from ui.markup import render_markdown

_EXTRA = str.maketrans({"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;", "\\": "&#92;"})


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True).translate(_EXTRA)


def text_block(text: str, cls: str = "rlhf-text") -> str:
    return f'<div class="{cls}" tabindex="0">{esc(text)}</div>'


def content_block(text: str) -> str:
    """Model or user text, both rendered (sanitised markdown) and raw; CSS shows one of them."""
    return (f'<div class="rlhf-content"><div class="rlhf-md" tabindex="0">{render_markdown(text)}</div>'
            f'{text_block(text, "rlhf-text rlhf-raw")}</div>')


def render_prompt(prompt: Any) -> str:
    if isinstance(prompt, str):
        return f'<div class="rlhf-turn rlhf-user"><div class="rlhf-role">prompt</div>{content_block(prompt)}</div>'
    turns = []
    for msg in prompt:
        role = esc(msg.get("role", "?"))
        turns.append(f'<div class="rlhf-turn rlhf-{role}"><div class="rlhf-role">{role}</div>'
                     f'{content_block(msg.get("content", ""))}</div>')
    return "".join(turns)


def render_item(assignment) -> str:
    """Prompt (all turns) and the responses in shown order, labelled A, B, ..."""
    responses = "".join(
        f'<div class="rlhf-response" id="rlhf-response-{label}"><div class="rlhf-label">Response {label}</div>'
        f"{content_block(text)}</div>"
        for label, text in zip(assignment.labels, assignment.responses)
    )
    return (f'<div class="rlhf-item" data-assignment="{int(assignment.id)}">'
            f'<div class="rlhf-prompt">{render_prompt(assignment.prompt)}</div>'
            f'<div class="rlhf-responses">{responses}</div></div>')


def render_message(text: str) -> str:
    return f'<div class="rlhf-item rlhf-message">{esc(text)}</div>'


def render_guidelines(text: str) -> str:
    return text_block(text or "(no guidelines for this campaign)", "rlhf-guidelines")


def render_progress(p: dict) -> str:
    judged, remaining = p["judged"], p["remaining"]
    total = judged + remaining
    pct = 100 * judged / total if total else 100
    minutes = p["time_spent_s"] / 60
    return (f'<div class="rlhf-progress" id="rlhf-progress"><div class="rlhf-bar"><div style="width:{pct:.0f}%"></div></div>'
            f"<span>You: {judged} judged · {p['skipped']} skipped · {remaining} left · {minutes:.1f} min</span></div>")


# Every rule of the app's own look. It goes into the page's <head> (see HEAD), not through
# Gradio's `css=`: Gradio prefixes each rule of that with `.gradio-container.gradio-container-<v>
# .contain`. A rule that starts at <body> (the L and M toggles set classes there) never matches
# in that form, and the plain rule it is prefixed from (four classes) outweighs the toggle's
# unprefixed copy (two classes and a tag): L toggled the class and moved nothing.
STYLE = """
.rlhf-item { font-size: 15px; }
.rlhf-text, .rlhf-md { max-height: 50vh; overflow: auto; padding: 8px 10px; box-sizing: border-box; max-width: 100%;
  border: 1px solid var(--border-color-primary); border-radius: 6px; background: var(--background-fill-secondary);
  overflow-wrap: anywhere; }
.rlhf-text { white-space: pre-wrap; font-family: ui-monospace, monospace; }
.rlhf-md > :first-child { margin-top: 0; } .rlhf-md > :last-child { margin-bottom: 0; }
.rlhf-md pre { white-space: pre-wrap; overflow-wrap: anywhere; padding: 6px 8px; border-radius: 4px;
  background: var(--background-fill-primary); }
.rlhf-md table { display: block; overflow-x: auto; }
.rlhf-raw { display: none; }
body.rlhf-raw-mode .rlhf-raw { display: block; }
body.rlhf-raw-mode .rlhf-md { display: none; }
.rlhf-turn { margin-bottom: 8px; }
.rlhf-role, .rlhf-label { font-weight: 600; font-size: 13px; text-transform: uppercase; opacity: .75; margin: 2px 0; }
.rlhf-responses { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(340px, 100%), 1fr)); gap: 12px;
  margin-top: 12px; }
.rlhf-responses > * { min-width: 0; }
body.rlhf-stacked .rlhf-responses { grid-template-columns: minmax(0, 1fr); }
.rlhf-guidelines { white-space: pre-wrap; max-height: 20vh; overflow: auto; overflow-wrap: anywhere; }
.rlhf-message { padding: 24px; text-align: center; font-size: 17px; }
.rlhf-progress .rlhf-bar { height: 6px; background: var(--background-fill-secondary); border-radius: 3px; margin-bottom: 4px; }
.rlhf-progress .rlhf-bar div { height: 6px; background: var(--color-accent); border-radius: 3px; }
.rlhf-progress, .rlhf-note { font-size: 13px; }
.rlhf-keys kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; font-size: 12px; }
#rlhf-answer-bar { position: fixed; left: 0; right: 0; bottom: 0; z-index: 100; margin: 0; padding: 6px 10px;
  background: var(--background-fill-primary); border-top: 1px solid var(--border-color-primary);
  box-shadow: 0 -2px 8px rgba(0, 0, 0, .12); max-height: 50vh; overflow-y: auto; gap: 6px !important; }
#rlhf-answer-bar button { min-width: 0 !important; }
#rlhf-answer-bar .rlhf-bar-row { gap: 6px !important; flex-wrap: wrap; }
#rlhf-label-tab { padding-bottom: var(--rlhf-bar-h, 180px); }
.rlhf-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px; }
.rlhf-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px;
  background: var(--background-fill-secondary); }
.rlhf-card .rlhf-card-title { font-size: 12px; text-transform: uppercase; opacity: .7; }
.rlhf-card .rlhf-card-value { font-size: 24px; font-weight: 600; margin: 2px 0; }
.rlhf-card .rlhf-card-note { font-size: 12px; opacity: .8; }
.rlhf-card.rlhf-warn { border-color: #d97706; }
.rlhf-case { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; margin-bottom: 10px; }
.rlhf-case table { width: 100%; border-collapse: collapse; font-size: 14px; }
.rlhf-case td, .rlhf-case th { border-top: 1px solid var(--border-color-primary); padding: 4px 6px; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; white-space: pre-wrap; }
"""

KEYS_HELP = (
    '<div class="rlhf-keys">Keys: <kbd>1</kbd>/<kbd>A</kbd> A better · <kbd>2</kbd>/<kbd>B</kbd> B better · '
    "<kbd>3</kbd>/<kbd>T</kbd> tie · <kbd>4</kbd>/<kbd>X</kbd> both bad · ranking: <kbd>A</kbd>…<kbd>H</kbd> "
    "or <kbd>1</kbd>…<kbd>8</kbd> add next, <kbd>Backspace</kbd> remove last, <kbd>Enter</kbd> submit · "
    "<kbd>S</kbd> skip · <kbd>U</kbd> undo · <kbd>R</kbd> write rationale (<kbd>Esc</kbd> leaves the box) · "
    "<kbd>L</kbd> side by side / stacked · <kbd>M</kbd> rendered / raw text</div>"
)

# Keyboard shortcuts: each key clicks the button with that elem_id, so a key does exactly
# what the button does (same server-side checks). Keys are ignored while typing in a box.
HEAD = "<style>" + STYLE + """</style>
<script>
(function () {
  if (window.__rlhfKeys) return;
  window.__rlhfKeys = true;
  // The view toggles (L: stacked, M: raw text) are classes on <body>, kept across reloads.
  const toggles = {'rlhf-stacked': 'rlhf-stacked', 'rlhf-raw-mode': 'rlhf-raw-mode'};
  window.rlhfToggle = function (cls) {
    document.body.classList.toggle(cls);
    localStorage.setItem(cls, document.body.classList.contains(cls) ? '1' : '0');
  };
  document.addEventListener('DOMContentLoaded', () => {
    for (const cls of Object.keys(toggles)) if (localStorage.getItem(cls) === '1') document.body.classList.add(cls);
    // Room under the item for the fixed answer bar, whatever its height (it wraps on a phone).
    const fit = () => {
      const bar = document.getElementById('rlhf-answer-bar');
      const h = bar ? (bar.offsetHeight + 16) + 'px' : '';
      if (h && document.documentElement.style.getPropertyValue('--rlhf-bar-h') !== h)
        document.documentElement.style.setProperty('--rlhf-bar-h', h);
    };
    new MutationObserver(fit).observe(document.body, {childList: true, subtree: true});
    window.addEventListener('resize', fit);
  });
  function visible(el) { return el && el.offsetParent !== null; }
  function click(id) {
    const el = document.getElementById(id);
    const b = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button'));
    if (visible(b) && !b.disabled) { b.click(); return true; }
    return false;
  }
  function ranking() { return visible(document.getElementById('rlhf-rank-submit')); }
  document.addEventListener('keydown', function (e) {
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' || t.isContentEditable);
    if (typing) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key.toLowerCase();
    let done = false;
    if (ranking()) {
      const letters = 'abcdefgh';
      let i = letters.indexOf(k);
      if (i < 0 && k >= '1' && k <= '8') i = Number(k) - 1;
      if (i >= 0) done = click('rlhf-rank-' + letters[i].toUpperCase());
      else if (e.key === 'Backspace') done = click('rlhf-rank-back');
      else if (e.key === 'Enter') done = click('rlhf-rank-submit');
    } else {
      const map = {'1': 'rlhf-choice-A', 'a': 'rlhf-choice-A', '2': 'rlhf-choice-B', 'b': 'rlhf-choice-B',
                   '3': 'rlhf-choice-tie', 't': 'rlhf-choice-tie', '4': 'rlhf-choice-both_bad', 'x': 'rlhf-choice-both_bad'};
      if (map[k]) done = click(map[k]);
    }
    if (!done) {
      if (k === 's') done = click('rlhf-skip');
      else if (k === 'u') done = click('rlhf-undo');
      else if (k === 'l') { rlhfToggle('rlhf-stacked'); done = true; }
      else if (k === 'm') { rlhfToggle('rlhf-raw-mode'); done = true; }
      else if (k === 'r') { const ta = document.querySelector('#rlhf-rationale textarea'); if (ta) { ta.focus(); done = true; } }
    }
    if (done) e.preventDefault();
  });
  // Drafts: what a labeler typed survives reloads, skips and undos (keyed by assignment id).
  window.rlhfDrafts = {
    all() { try { return JSON.parse(localStorage.getItem('rlhf-drafts') || '{}'); } catch (_) { return {}; } },
    save(aid, field, value) {
      if (!aid) return;
      const d = this.all(); d[aid] = Object.assign(d[aid] || {}, {[field]: value, at: Date.now()});
      const keys = Object.keys(d).sort((a, b) => d[b].at - d[a].at);
      for (const old of keys.slice(200)) delete d[old];
      localStorage.setItem('rlhf-drafts', JSON.stringify(d));
    },
    get(aid, field) { const d = this.all()[aid]; return (d && d[field]) || ''; },
  };
})();
</script>
"""
