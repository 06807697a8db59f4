"""The run report (dmsreport.render_report) as a reader sees it: parsed with the standard library's HTML parser,
checked for what the page shows (a bar per task, the failures with their stderr, the members and their parameters,
the cost only when priced) and that it stands alone (nothing fetched from anywhere)."""
from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser

import pytest

from dmscontract.manifest import Manifest, Totals
from dmsreport import MEMBERS_TABLE_MAX_ROWS, TIMELINE_SVG_MAX_TASKS, render_report
from tests.support.report_manifests import FAILURES, SCRIPT_TAIL, START_DATES, big_sweep, cancelled_run, single_run, sweep12

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: "Element | None" = None
    children: list["Element | str"] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def find_all(self, tag: str | None = None, **attrs: str) -> list["Element"]:
        return [e for e in self.walk() if (tag is None or e.tag == tag)
                and all(e.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, element_id: str) -> "Element":
        (found,) = [e for e in self.walk() if e.attrs.get("id") == element_id] or [None]
        assert found is not None, f"no element with id {element_id!r}"
        return found


class Tree(HTMLParser):
    """A DOM as a browser would build it, enough for these checks (void elements, self-closed SVG elements)."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = self.root
        self.feed(document)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs}, self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_startendtag(self, tag, attrs):
        self.open.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.open))

    def handle_endtag(self, tag):
        node = self.open
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.open = node.parent

    def handle_data(self, data):
        self.open.children.append(data)


def page(manifest: Manifest, **kwargs) -> tuple[str, Element]:
    document = render_report(manifest, generated_at="2026-12-01T09:00:00Z", **kwargs)
    return document, Tree(document).root


def bars(root: Element) -> list[str]:
    return [e.attrs["id"] for e in root.walk() if e.attrs.get("id", "").startswith("task-")]


@pytest.fixture(scope="module")
def sweep() -> tuple[Manifest, str, Element]:
    manifest = sweep12()
    document, root = page(manifest)
    return manifest, document, root


def test_the_timeline_has_one_bar_per_started_task_each_named_by_its_task(sweep):
    manifest, _, root = sweep
    timeline = root.by_id("timeline")
    assert sorted(bars(timeline)) == sorted(f"task-{t.id}" for t in manifest.tasks)
    assert bars(root) == bars(timeline), "no task- element outside the timeline"
    assert timeline.attrs["data-format"] == "svg" and timeline.find_all("svg")


def test_the_summary_shows_the_state_reason_and_timings(sweep):
    _, _, root = sweep
    assert root.by_id("run-status").text() == "failed"
    assert "3 of 12 members failed" in root.by_id("reason").text()
    summary = root.by_id("summary").text()
    for shown in ("2026-12-01 07:57:00 UTC", "2026-12-01 08:00:00 UTC", "21 min 58 s"):
        assert shown in summary, shown
    assert root.by_id("retries").text() == "1" and root.by_id("requeues").text() == "1"


def test_counts_by_outcome_are_a_chart_and_the_numbers(sweep):
    _, _, root = sweep
    counts = root.by_id("counts")
    assert {li.attrs["data-outcome"]: li.find_all("strong")[0].text() for li in counts.find_all("li")} == {
        "succeeded": "9", "failed": "3", "cancelled": "0"}
    (chart,) = counts.find_all("svg")
    assert chart.attrs["aria-label"] == "tasks by outcome: succeeded 9, failed 3, cancelled 0"
    assert root.by_id("durations").find_all("svg"), "the duration histogram"


def test_the_failed_members_are_listed_with_exit_codes_and_stderr_escaped(sweep):
    _, document, root = sweep
    section = root.by_id("failed-tasks")
    items = section.find_all("li")
    assert [li.attrs["data-task-id"] for li in items] == [f"member-{i:05d}" for i in sorted(FAILURES)]
    for li, index in zip(items, sorted(FAILURES)):
        exit_code, tail = FAILURES[index]
        assert li.find_all(class_="exit-code")[0].text() == f"exit code {exit_code}"
        (pre,) = li.find_all("pre")
        assert pre.text() == tail, "the stderr tail, as written"
    # the <script> in a stderr tail is text in its <pre>, never an element
    assert SCRIPT_TAIL not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert not [s for s in root.find_all("script") if "alert(1)" in s.text()]
    assert "&amp; cannot be used" in document


def test_the_members_table_has_a_row_per_member_with_its_parameters(sweep):
    manifest, _, root = sweep
    table = root.by_id("members-table")
    headers = [th.text() for th in table.find_all("th")]
    assert headers[:4] == ["task", "index", "START_DATE", "ROW"]
    assert headers[4:] == ["outcome", "exit code", "start", "end", "duration", "node", "retries", "requeues"]
    rows = table.find_all("tbody")[0].find_all("tr")
    assert [row.attrs["data-member"] for row in rows] == [str(i) for i in range(12)]
    for row, member in zip(rows, manifest.members):
        cells = [td.text() for td in row.find_all("td")]
        assert cells[:4] == [member.id, str(member.member), member.parameters["START_DATE"], member.parameters["ROW"]]
        assert cells[4] == member.outcome and cells[5] == str(member.exit_code)
    assert {row.find_all("td")[2].text() for row in rows} == set(START_DATES)
    failed_rows = [row.attrs["data-member"] for row in rows if "failed" in row.attrs["class"]]
    assert failed_rows == [str(i) for i in sorted(FAILURES)]


def test_a_chart_per_parameter_and_a_select_to_choose_one(sweep):
    _, _, root = sweep
    section = root.by_id("parameter-plots")
    assert [o.text() for o in root.by_id("parameter-select").find_all("option")] == ["START_DATE", "ROW"]
    plots = section.find_all("div", class_="plot chart")
    assert [p.attrs["data-parameter"] for p in plots] == ["START_DATE", "ROW"]
    assert all(len(p.find_all("svg")) == 1 for p in plots)


def test_the_page_stands_alone_no_url_to_fetch(sweep):
    _, document, root = sweep
    for manifest in (None, cancelled_run(), single_run()):
        if manifest is not None:
            document, root = page(manifest)
        linked = [(e.tag, k, v) for e in root.walk() for k, v in e.attrs.items() if k in ("src", "href", "xlink:href")]
        assert linked, "the page has internal links and SVG references"
        for tag, name, value in linked:
            assert value.startswith(("#", "data:")), (tag, name, value)
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", document, re.I)
        assert not root.find_all("link") and not [s for s in root.find_all("script") if "src" in s.attrs]
        assert "<?xml" not in document and "<!DOCTYPE svg" not in document
        assert "@import" not in document and "url(http" not in document
        # one page of several charts: every id once, and every internal reference (#..., url(#...)) finds its element
        ids = [e.attrs["id"] for e in root.walk() if "id" in e.attrs]
        assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:5]
        references = {v[1:] for _, _, v in linked if v.startswith("#")} | set(re.findall(r"url\(#([^)]+)\)", document))
        assert references and references <= set(ids), sorted(references - set(ids))[:5]


def test_cost_is_claimed_only_when_the_manifest_has_one():
    priced_doc, priced = page(sweep12(priced=True))
    assert priced.by_id("estimated-cost").text() == "0.23 USD"
    assert "price per node-hour" in priced.by_id("usage-table").text()
    assert not priced.find_all(id="no-cost")

    document, unpriced = page(sweep12(priced=False))
    usage = unpriced.by_id("usage")
    assert not usage.find_all(id="estimated-cost")
    assert "No price table is configured, so no cost is estimated." in unpriced.by_id("no-cost").text()
    assert "USD" not in document and "price per" not in usage.text()
    assert unpriced.by_id("node-hours").text() == priced.by_id("node-hours").text() == "1.43"
    assert [td.text() for td in unpriced.by_id("usage-table").find_all("td")][:2] == ["Standard_D4s_v3", "dedicated"]


def test_a_single_run_has_its_one_bar_and_no_members_section():
    _, root = page(single_run())
    assert bars(root) == ["task-main"]
    assert root.by_id("run-status").text() == "succeeded"
    assert not root.find_all(id="members") and not root.find_all(id="parameter-plots")
    assert "No task failed." in root.by_id("failed-tasks").text()
    assert not root.find_all(id="reason")
    assert root.by_id("only-duration").text().split() == "One task has a duration: main, succeeded, ran 41 min 55 s.".split()


def test_a_cancelled_run_draws_the_tasks_that_started_and_counts_the_rest_cancelled():
    manifest = cancelled_run()
    _, root = page(manifest)
    assert sorted(bars(root)) == sorted(f"task-{t.id}" for t in manifest.tasks if t.started_at)
    assert len(bars(root)) == 4
    counts = {li.attrs["data-outcome"]: li.find_all("strong")[0].text() for li in root.by_id("counts").find_all("li")}
    assert counts == {"succeeded": "2", "failed": "0", "cancelled": "4"}
    assert root.by_id("run-status").text() == "cancelled" and "cancelled by alice" in root.by_id("reason").text()
    assert not root.find_all("li", data_task_id="member-00002"), "a task ended by the cancel is not a failure"
    assert "This manifest records no usage." in root.by_id("usage").text()


def test_a_provisional_report_says_so_at_the_top_and_counts_running_tasks():
    manifest = cancelled_run()
    running = [t if t.member != 2 else replace(t, result=None, failure=None, ended_at=None, state="running")
               for t in manifest.tasks]
    still_going = replace(manifest, tasks=tuple(running), status="running", reason=None)
    _, root = page(still_going, provisional=True)
    banner = root.by_id("provisional")
    first_section = next(e for e in root.walk() if e.tag == "section")
    assert "still going" in banner.text()
    order = list(root.walk())
    assert order.index(banner) < order.index(first_section), "the banner comes before the report"
    counts = {li.attrs["data-outcome"]: li.find_all("strong")[0].text() for li in root.by_id("counts").find_all("li")}
    assert counts["running"] == "1" and counts["waiting"] == "2"
    assert "task-member-00002" in bars(root)
    assert "so far" in root.by_id("summary").text()
    _, final = page(manifest)
    assert not final.find_all(id="provisional")


def test_a_run_of_more_than_2000_tasks_draws_its_timeline_as_a_png_and_shows_the_first_members():
    manifest = big_sweep(2500)
    assert len(manifest.tasks) > TIMELINE_SVG_MAX_TASKS
    _, root = page(manifest)
    timeline = root.by_id("timeline")
    assert timeline.attrs["data-format"] == "png" and timeline.attrs["data-bars"] == "2500"
    (image,) = timeline.find_all("img")
    prefix = "data:image/png;base64,"
    assert image.attrs["src"].startswith(prefix)
    assert base64.b64decode(image.attrs["src"][len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not timeline.find_all("svg") and not bars(root)
    assert "drawn as an image" in root.by_id("timeline-png-note").text()
    rows = root.by_id("members-table").find_all("tbody")[0].find_all("tr")
    assert len(rows) == MEMBERS_TABLE_MAX_ROWS and rows[-1].attrs["data-member"] == str(MEMBERS_TABLE_MAX_ROWS - 1)
    assert "members.csv" in root.by_id("members-truncated").text()


def test_a_sweep_of_1000_members_renders_in_a_few_seconds():
    manifest = big_sweep(1000)
    began = time.perf_counter()
    document = render_report(manifest)
    took = time.perf_counter() - began
    assert took < 8, f"{took:.1f} s"
    assert len(bars(Tree(document).root)) == 1000


def test_reports_render_on_several_threads_at_once_each_with_its_own_bars():
    manifests = [sweep12(), single_run(), cancelled_run(), big_sweep(40)]
    results: dict[int, list[str]] = {}

    def render(i: int) -> None:
        results[i] = sorted(bars(Tree(render_report(manifests[i])).root))

    threads = [threading.Thread(target=render, args=(i,)) for i in range(len(manifests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert {i: results.get(i) for i in range(len(manifests))} == {
        i: sorted(f"task-{t.id}" for t in m.tasks if t.started_at) for i, m in enumerate(manifests)}


def test_a_manifest_read_from_its_json_renders_the_same_page(sweep):
    manifest, document, root = sweep
    again = Tree(render_report(Manifest.from_json(manifest.to_json()), generated_at="2026-12-01T09:00:00Z")).root
    assert sorted(bars(again)) == sorted(bars(root)) and len(bars(again)) == 12
    assert again.by_id("failed-tasks").text() == root.by_id("failed-tasks").text()
    assert again.by_id("members-table").text() == root.by_id("members-table").text()


def test_a_run_with_no_task_or_times_it_cannot_read_still_gets_a_report():
    """Finishing writes the report before the manifest: an odd manifest must give a page, not an error."""
    empty = replace(sweep12(), tasks=(), totals=Totals.of([], []))
    _, root = page(empty)
    assert "No task has started" in root.by_id("timeline").text() and not bars(root)
    assert {li.attrs["data-outcome"]: li.find_all("strong")[0].text() for li in root.by_id("counts").find_all("li")} == {
        "succeeded": "0", "failed": "0", "cancelled": "0"}
    garbled = replace(sweep12(), tasks=tuple(replace(t, started_at="yesterday", ended_at="later") for t in sweep12().tasks))
    _, root = page(garbled)
    assert not bars(root) and len(root.by_id("members-table").find_all("tbody")[0].find_all("tr")) == 12
