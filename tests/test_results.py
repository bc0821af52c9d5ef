"""The results of record: the README's table and docs/results/README.md against the report.json files they cite,
and the docs' links and headings."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tinydistill import results

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "docs" / "results" / "history"
WORKLOG = re.compile(r"\bsession \d+|\bsessions \d+|\bissue #\d+", re.IGNORECASE)


def markdown_files() -> list[Path]:
    folders = [p for p in sorted(ROOT.glob("*/README.md")) if not p.parent.name.startswith(".") and p.parent.name != "data"]
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *folders]


def current_pages() -> list[Path]:
    return [p for p in markdown_files() if HISTORY not in p.parents and p.name != "report.md"]


def test_generated_tables_match_the_reports_they_cite():
    for rel, text in results.generate(ROOT).items():
        assert (ROOT / rel).read_text(encoding="utf-8") == text, (
            f"{rel} differs from what docs/results/results.json and its reports give: run `python -m tinydistill.results`")


def test_every_cited_report_exists_and_its_figures_appear_in_both_tables():
    index = results.load_index()
    readme = (ROOT / results.README).read_text(encoding="utf-8")
    table = readme[readme.index(results.BEGIN):readme.index(results.END)]
    page = (ROOT / results.RESULTS_README).read_text(encoding="utf-8")
    entries = [e for e in index["tasks"] if not e.get("placeholder")]
    assert {e["id"] for e in entries} >= {"sst2", "mrpc", "mrpc-budget"}
    for entry in entries:
        report = json.loads((ROOT / entry["report"]).read_text(encoding="utf-8"))
        student = results.find_row(report, entry["rows"]["student"], "student", entry["id"])
        mean = student["dev"][entry["metric"]]["mean"]
        for text in (table, page):
            assert f"{mean:.3f}" in text, (entry["id"], mean)
            assert entry["report"] in text
        for key in ("commit", "date", "cpu", "selection", "selected_on"):
            assert entry.get(key), (entry["id"], key)
        # The CPU the index names is the one the student's runs recorded, where they recorded one.
        folders = {str(Path(f).parent) for f in student["files"]}
        for cpu in {t.get("cpu") for t in report.get("timings") or [] if t.get("folder") in folders} - {None}:
            assert cpu in entry["cpu"], (entry["id"], cpu, entry["cpu"])
        assert entry["commit"] in page and entry["date"] in page


def test_placeholder_rows_are_marked(tmp_path):
    index = results.load_index()
    demo = next(e for e in index["tasks"] if e["id"] == "demo")
    if not demo.get("placeholder"):
        pytest.skip("the demo has its figures")
    assert "**placeholder**" in results.table(index, "")


def _copy_tree(tmp_path: Path) -> Path:
    """The files the generator reads, in a scratch repository."""
    index = results.load_index()
    pages = {results.RESULTS_README.parent / e["page"] for e in index["tasks"] if e.get("page")}
    for rel in [results.INDEX, results.README, results.RESULTS_README, *pages] + [
            Path(e["report"]) for e in index["tasks"] if e.get("report")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_a_changed_figure_makes_the_check_fail(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    assert results.main(["--check", "--root", str(root)]) == 0
    entry = next(e for e in results.load_index(root)["tasks"] if e["id"] == "sst2")
    path = root / entry["report"]
    report = json.loads(path.read_text())
    row = results.find_row(report, entry["rows"]["student"], "student", "sst2")
    row["dev"]["accuracy"]["mean"] -= 0.01
    path.write_text(json.dumps(report))
    assert results.main(["--check", "--root", str(root)]) == 1
    assert "stale" in capsys.readouterr().err
    assert results.main(["--root", str(root)]) == 0  # regenerates
    assert results.main(["--check", "--root", str(root)]) == 0
    assert f"{row['dev']['accuracy']['mean']:.3f}" in (root / "README.md").read_text()
    assert f"{row['dev']['accuracy']['mean']:.3f}" in (root / "docs/results/sst2.md").read_text()


def test_an_index_row_that_matches_nothing_is_an_error(tmp_path):
    root = _copy_tree(tmp_path)
    index = results.load_index(root)
    index["tasks"][0]["rows"]["student"]["run"] = "no-such-run"
    (root / results.INDEX).write_text(json.dumps(index))
    with pytest.raises(results.ResultsIndexError, match="no-such-run"):
        results.generate(root)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown page (lower case, punctuation dropped, spaces to hyphens,
    `-1`, `-2` ... for repeats)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return out


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = page.parent / path if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files or headings: {broken}"


def test_current_pages_carry_no_worklog_labels():
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in current_pages()
             for m in WORKLOG.finditer(p.read_text(encoding="utf-8"))]
    assert not found, found


def test_history_pages_are_headed_by_dates_not_worklog_labels():
    pages = sorted(HISTORY.glob("*.md"))
    assert pages
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # shell comments are not headings
        for line in text.splitlines():
            if line.startswith("#"):
                assert not WORKLOG.search(line), f"{page.name}: {line}"
