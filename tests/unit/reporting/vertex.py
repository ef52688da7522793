"""The report's pages as Vertex AI stores them, and the links a page may hold there."""

from __future__ import annotations

import html.parser
import shutil
from pathlib import Path


def as_vertex_stores_them(pages: dict[str, str], root: Path) -> dict[str, Path]:
    """Copy each page to ``<root>/<output>/render-report/<output>``: no extension, own folder.

    Vertex writes each output artifact of the render-report task to its own URI named after
    the output (``.../render-report_<id>/<output name>``), so ``leaderboard.html`` next to
    ``dashboard.html`` does not exist there.
    """
    out = {}
    for view, path in pages.items():
        target = root / f"{view}-artifact" / "render-report" / view
        target.parent.mkdir(parents=True)
        shutil.copyfile(path, target)
        out[view] = target
    return out


class Links(html.parser.HTMLParser):
    """Every link target (href, src, xlink:href) and every element id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "xlink:href", "action", "data") and value is not None:
                self.targets.append(value)
            if name == "id" and value:
                self.ids.add(value)


def broken_links(page: str) -> list[str]:
    """Targets that would break where the page stands alone: files, or anchors it lacks."""
    links = Links()
    links.feed(page)
    bad = []
    for target in links.targets:
        if target.startswith("#"):
            if target[1:] not in links.ids:
                bad.append(target)
        # Inline images (the colour bar) and MLflow UI links are fine anywhere.
        elif not target.startswith(("https://", "http://", "data:")):
            bad.append(target)
    return bad
