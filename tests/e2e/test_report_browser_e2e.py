"""The run report in a real browser: headless Chromium opens report.html from a file, offline, runs its scripts,
and shows the page. Not skipped when Chromium is missing: `./dev setup` installs it, and the test says so."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dmsreport import render_report
from tests.support import browser
from tests.support.report_manifests import FAILURES, sweep12


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        browser.chromium()
    except browser.BrowserMissing as missing:
        pytest.fail(str(missing))
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_report(sweep12()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dom(report: Path) -> str:
    return browser.dump_dom(report)


def _ids(dom: str, prefix: str) -> list[str]:
    return re.findall(rf'\bid="({re.escape(prefix)}[^"]*)"', dom)


def test_the_timeline_shows_one_bar_per_task_and_each_names_its_task(dom: str):
    manifest = sweep12()
    timeline = dom[dom.index('<section id="timeline"'):dom.index('<section id="failed-tasks"')]
    assert sorted(_ids(timeline, "task-")) == sorted(f"task-{t.id}" for t in manifest.tasks)
    assert len(_ids(dom, "task-")) == len(manifest.tasks)
    # the page's script gave each bar a tooltip naming its task
    assert len(re.findall(r"<title>member-\d{5} · ", timeline)) == len(manifest.tasks)


def test_the_failed_members_are_listed(dom: str):
    failed = dom[dom.index('<section id="failed-tasks"'):dom.index('<section id="members"')]
    assert re.findall(r'<li data-task-id="([^"]+)"', failed) == [f"member-{i:05d}" for i in sorted(FAILURES)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failed
    assert "exit code 137" in failed


def test_the_members_table_is_sortable_and_the_parameter_select_works(dom: str):
    (table,) = re.findall(r"<table[^>]*\bid=\"members-table\"[^>]*>", dom)
    assert 'data-sortable="ready"' in table, "the table's script ran"
    assert len(re.findall(r'<tr data-member="\d+"', dom)) == 12
    # the script shows the first parameter's chart and hides the others, and shows the select
    plots = re.findall(r'<div class="plot chart" data-parameter="([^"]+)" data-parameter-index="\d+"( hidden="")?>', dom)
    assert plots == [("START_DATE", ""), ("ROW", ' hidden=""')]
    assert re.search(r'<p class="select-row" id="parameter-choice">', dom), "the select is shown"


CLICKS = """<script>
(function () {
  var table = document.getElementById("members-table");
  var order = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.getAttribute("data-member"); }).join(","); };
  var header = function (text) { return Array.prototype.filter.call(table.tHead.rows[0].cells, function (th) { return th.textContent === text; })[0]; };
  header("ROW").click(); table.setAttribute("data-by-row", order());
  header("ROW").click(); table.setAttribute("data-by-row-descending", order());
  header("duration").click(); table.setAttribute("data-by-duration", order());
})();
</script>
</body>"""


def test_clicking_a_header_sorts_the_members_by_it(report: Path, tmp_path: Path):
    clicked = tmp_path / "clicked.html"
    clicked.write_text(report.read_text(encoding="utf-8").replace("</body>", CLICKS, 1), encoding="utf-8")
    dom = browser.dump_dom(clicked)
    (table,) = re.findall(r"<table[^>]*\bid=\"members-table\"[^>]*>", dom)
    attribute = lambda name: [int(i) for i in re.search(rf'{name}="([^"]*)"', table).group(1).split(",")]  # noqa: E731
    assert attribute("data-by-row") == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11], "by ROW, ties in their order"
    assert attribute("data-by-row-descending") == [3, 7, 11, 2, 6, 10, 1, 5, 9, 0, 4, 8]
    members = {t.member: t.duration_s for t in sweep12().members}
    by_duration = attribute("data-by-duration")
    assert sorted(by_duration) == list(range(12))
    assert [members[i] for i in by_duration] == sorted(members.values()), "durations sort as numbers, not as text"


def test_the_screenshot_is_not_blank(report: Path, tmp_path: Path):
    png = browser.screenshot(report, tmp_path / "report.png", width=1280, height=2400)
    assert not browser.is_blank(png)
    # and a blank page is recognised as blank, so the check above can fail
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    assert browser.is_blank(browser.screenshot(empty, tmp_path / "empty.png", width=400, height=300))
