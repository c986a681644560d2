"""Markdown as a reader sees it, from text that a model or a user wrote, with nothing live in it.

Model outputs are mostly markdown (lists, emphasis, fenced code), and a labeler judges them
faster rendered. The renderer is markdown-it-py (CommonMark) configured so that its output can
hold no markup the author chose:

- `html` is off: any HTML in the text (`<script>`, `<img onerror>`, `<svg onload>`, HTML
  inside markdown) comes out as escaped text, exactly as written;
- images are off (a remote image would be fetched as soon as the item is shown, telling its
  author who is labeling and when); `![alt](url)` stays as its text;
- a link is a link only to http(s) or mailto; `javascript:`, `data:`, relative and other
  URLs stay as their source text, and every link opens in a new tab without a referrer;
- `$ { } \\` and backtick are turned into character references in the whole output, as
  `ui.render.esc` does, so that no template engine on the page can read them as code.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_TEMPLATE_CHARS = str.maketrans({"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;", "\\": "&#92;"})


def _safe_link(url: str) -> bool:
    """Only absolute web and mail links; everything else stays as text."""
    return url.strip().lower().startswith(_SAFE_SCHEMES)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    md.validateLink = _safe_link

    def link_open(renderer, tokens, idx, options, env):
        tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
        tokens[idx].attrSet("target", "_blank")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _parser()


def render_markdown(text: str) -> str:
    """Sanitised HTML of `text` rendered as CommonMark (plus tables and strikethrough)."""
    return _MD.render(str(text)).translate(_TEMPLATE_CHARS)
