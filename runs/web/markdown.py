"""Markdown that models answer with, rendered inert: markdown-it-py (CommonMark).

Raw HTML is off (tags in the text come out escaped, as text); links carry
rel="nofollow noopener noreferrer" and open in a new tab; images are never loaded: each is
drawn as a link to its address, to click (remote images in LLM output have leaked data,
which is why Langfuse made them click-to-load; this site's CSP would refuse them anyway).
Headings move down three levels (# is h4): the page keeps its own outline.
markdown-it-py's own link check refuses javascript:, vbscript:, file: and data: URLs.
"""

from __future__ import annotations

import html

from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.enable("table")
_md.enable("strikethrough")


def _link_open(self, tokens, idx, options, env):
    token = tokens[idx]
    token.attrSet("rel", "nofollow noopener noreferrer")
    token.attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _image(self, tokens, idx, options, env):
    token = tokens[idx]
    src = html.escape(token.attrGet("src") or "", quote=True)
    alt = html.escape(self.renderInlineAsText(token.children or [], options, env), quote=True)
    return (
        f'<a class="md-img" href="{src}" rel="nofollow noopener noreferrer" target="_blank"'
        f' title="An image, not loaded: open it in a new tab">image: {alt or src}</a>'
    )


def _heading(self, tokens, idx, options, env):
    # A model's "# Title" sits inside a page that has its own h1 and h2s: shifted to h4-h6.
    token = tokens[idx]
    level = min(int(token.tag[1:]) + 3, 6) if token.tag[1:].isdigit() else 6
    token.tag = f"h{level}"
    return self.renderToken(tokens, idx, options, env)


_md.add_render_rule("heading_open", _heading)
_md.add_render_rule("heading_close", _heading)
_md.add_render_rule("link_open", _link_open)
_md.add_render_rule("image", _image)


def render(text: str) -> str:
    """HTML for ``text`` (markdown). Every character of the text is escaped by the
    renderer; the result is only ever marked safe as a whole, by rendering.py."""
    return _md.render(text)
