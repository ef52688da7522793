"""Strings from MLflow made safe to show: shortened past a limit, isolated for bidi.

Run names, params, tags, metric keys and failure reasons are whatever a user or a tool logged:
100 KB values and right-to-left override characters included. Pages show at most
:data:`TEXT_MAX` characters of one (the start, an ellipsis, and the full length) inside
``<bdi>``, so a right-to-left override cannot reorder the text around it; the tooltip holds up
to :data:`TITLE_MAX` characters, so three runs with a 100 KB name do not make a megabyte page
(the MLflow UI, linked from each run, has the whole value).
"""

from __future__ import annotations

import re

from markupsafe import Markup

# Characters of one MLflow string shown in a cell or a heading.
TEXT_MAX = 200
# Characters of it in the cell's tooltip.
TITLE_MAX = 1000
# Bidi embedding, override and isolate controls, and the marks: charts drop them (an SVG
# <text> has no <bdi>).
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
# First strong isolate ... pop directional isolate: <bdi> for plain text (Markdown).
FSI, PDI = "\u2068", "\u2069"


def short_text(text: str, limit: int = TEXT_MAX) -> str:
    """``text`` when it fits in ``limit`` characters, else its start, an ellipsis and its length."""
    text = str(text)
    if len(text) <= limit:
        return text
    tail = f"\u2026 ({len(text):,} characters)"
    return text[: max(1, limit - len(tail))] + tail


def strip_bidi(text: str) -> str:
    """``text`` without bidi control characters (for chart labels)."""
    return _BIDI_CONTROLS.sub("", str(text))


def isolate(text: str) -> str:
    """``text`` between FSI and PDI: isolated for bidi in plain text (Markdown)."""
    return f"{FSI}{text}{PDI}"


def show(text: object, limit: int = TEXT_MAX) -> Markup:
    """HTML for one MLflow string: escaped, in ``<bdi>``, shortened with a tooltip when long."""
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return Markup("<bdi>{}</bdi>").format(text)
    return Markup('<bdi title="{}">{}</bdi>').format(
        short_text(text, TITLE_MAX), short_text(text, limit)
    )


def attr(text: object, limit: int = TITLE_MAX) -> str:
    """An MLflow string for an attribute value (escaped by the template): shortened."""
    return short_text("" if text is None else str(text), limit)
