"""Each view stands alone as Vertex stores it: an extension-less file at its own path."""

from __future__ import annotations

from reporting.build import write_report
from tests.unit.reporting.mlflow_runs import EXPERIMENT
from tests.unit.reporting.vertex import as_vertex_stores_them, broken_links
from trainer import contract


def test_no_view_links_to_a_sibling_file(sweep_report, tmp_path):
    stored = as_vertex_stores_them(sweep_report.pages, tmp_path)
    assert set(stored) == {contract.VIEW_COMBINED, *contract.VIEWS}
    for view, path in stored.items():
        page = path.read_text(encoding="utf-8")
        assert broken_links(page) == [], view
        # No reference to any page's file name, with or without its extension.
        for other in (contract.VIEW_COMBINED, *contract.VIEWS):
            assert f'href="{other}.html"' not in page and f'href="{other}"' not in page
    combined = stored[contract.VIEW_COMBINED].read_text(encoding="utf-8")
    for view in contract.VIEWS:
        assert f'href="#{view}"' in combined


def test_unreachable_pages_stand_alone_too(tmp_path):
    result = write_report("http://127.0.0.1:9", EXPERIMENT, str(tmp_path / "out"),
                          fail_on_unreachable=False)  # fmt: skip
    for view, path in as_vertex_stores_them(result.pages, tmp_path / "vertex").items():
        assert broken_links(path.read_text(encoding="utf-8")) == [], view


def test_the_link_check_finds_sibling_files_and_missing_anchors():
    page = '<a href="leaderboard.html">x</a><a href="#here">y</a><a href="#gone">z</a><p id="here">'
    assert broken_links(page) == ["leaderboard.html", "#gone"]
