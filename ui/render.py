"""What a labeler sees, as HTML in which everything a model or a user wrote is inert text.

Prompts, responses, guidelines and names are escaped (HTML specials, and `$ { } \\` and
backtick too, so that no template engine on the page can read them as code), shown in
`<pre>`-like blocks that keep whitespace, wrap long lines and scroll: never rendered as HTML
or markdown, never truncated. Multi-turn prompts show every turn with its role.
"""

from __future__ import annotations

import html
from typing import Any

_EXTRA = str.maketrans({"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;", "\\": "&#92;"})


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True).translate(_EXTRA)


def text_block(text: str, cls: str = "rlhf-text") -> str:
    return f'<div class="{cls}" tabindex="0">{esc(text)}</div>'


def render_prompt(prompt: Any) -> str:
    if isinstance(prompt, str):
        return f'<div class="rlhf-turn rlhf-user"><div class="rlhf-role">prompt</div>{text_block(prompt)}</div>'
    turns = []
    for msg in prompt:
        role = esc(msg.get("role", "?"))
        turns.append(f'<div class="rlhf-turn rlhf-{role}"><div class="rlhf-role">{role}</div>'
                     f'{text_block(msg.get("content", ""))}</div>')
    return "".join(turns)


def render_item(assignment) -> str:
    """Prompt (all turns) and the responses in shown order, labelled A, B, ..."""
    responses = "".join(
        f'<div class="rlhf-response" id="rlhf-response-{label}"><div class="rlhf-label">Response {label}</div>'
        f"{text_block(text)}</div>"
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


CSS = """
.rlhf-item { font-size: 15px; }
.rlhf-text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace;
  max-height: 55vh; overflow: auto; padding: 8px 10px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; background: var(--background-fill-secondary); }
.rlhf-turn { margin-bottom: 8px; }
.rlhf-role, .rlhf-label { font-weight: 600; font-size: 13px; text-transform: uppercase; opacity: .75; margin: 2px 0; }
.rlhf-responses { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 12px; margin-top: 12px; }
body.rlhf-stacked .rlhf-responses { grid-template-columns: 1fr; }
.rlhf-guidelines { white-space: pre-wrap; max-height: 30vh; overflow: auto; }
.rlhf-message { padding: 24px; text-align: center; font-size: 17px; }
.rlhf-progress .rlhf-bar { height: 6px; background: var(--background-fill-secondary); border-radius: 3px; margin-bottom: 4px; }
.rlhf-progress .rlhf-bar div { height: 6px; background: var(--color-accent); border-radius: 3px; }
.rlhf-keys kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; font-size: 12px; }
"""

KEYS_HELP = (
    '<div class="rlhf-keys">Keys: <kbd>1</kbd>/<kbd>A</kbd> A better · <kbd>2</kbd>/<kbd>B</kbd> B better · '
    "<kbd>3</kbd>/<kbd>T</kbd> tie · <kbd>4</kbd>/<kbd>X</kbd> both bad · ranking: <kbd>A</kbd>…<kbd>H</kbd> "
    "or <kbd>1</kbd>…<kbd>8</kbd> add next, <kbd>Backspace</kbd> remove last, <kbd>Enter</kbd> submit · "
    "<kbd>S</kbd> skip · <kbd>U</kbd> undo · <kbd>R</kbd> write rationale (<kbd>Esc</kbd> leaves the box) · "
    "<kbd>L</kbd> side by side / stacked</div>"
)

# Keyboard shortcuts: each key clicks the button with that elem_id, so a key does exactly
# what the button does (same server-side checks). Keys are ignored while typing in a box.
HEAD = """
<script>
(function () {
  if (window.__rlhfKeys) return;
  window.__rlhfKeys = true;
  if (localStorage.getItem('rlhf-stacked') === '1') document.addEventListener('DOMContentLoaded', () => document.body.classList.add('rlhf-stacked'));
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
      else if (k === 'l') { document.body.classList.toggle('rlhf-stacked');
        localStorage.setItem('rlhf-stacked', document.body.classList.contains('rlhf-stacked') ? '1' : '0'); done = true; }
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
