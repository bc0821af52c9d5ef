"""Results of record: one table, generated from the committed report.json files it cites.

    python -m tinydistill.results            # rewrite docs/results/README.md and the README's table
    python -m tinydistill.results --check    # exit 1 if either differs from what the index gives

`docs/results/results.json` is the index: per task, the committed `report.json` (written by
`python -m tinydistill.report`) the figures come from, which rows of it to read (the constant predictor, the
teacher, the student, the no-distillation baseline), and what the report cannot say itself: the commit and date
it was committed at, the CPU, how the settings were chosen, and caveats. Every figure in the tables is read from
the report; nothing is typed by hand, so a table cannot drift from its source (tests/test_results.py regenerates
both tables and compares).

An entry with `"placeholder": true` has no report yet; it renders as a marked row without figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INDEX = Path("docs/results/results.json")
RESULTS_README = Path("docs/results/README.md")
README = Path("README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


class ResultsIndexError(ValueError):
    """The index names a report, row or key that is not there."""


def load_index(root: Path = ROOT) -> dict[str, Any]:
    return json.loads((root / INDEX).read_text(encoding="utf-8"))


def load_report(entry: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    path = root / entry["report"]
    if not path.is_file():
        raise ResultsIndexError(f"{INDEX}: {entry['id']}: report {entry['report']} not found")
    return json.loads(path.read_text(encoding="utf-8"))


def find_row(report: dict[str, Any], match: dict[str, Any], what: str, entry_id: str) -> dict[str, Any]:
    """The one row of `report["rows"]` whose keys hold the values in `match`."""
    rows = [r for r in report.get("rows", []) if all(r.get(k) == v for k, v in match.items())]
    if len(rows) != 1:
        raise ResultsIndexError(f"{INDEX}: {entry_id}: {what} {match} matches {len(rows)} rows of its report, not one")
    return rows[0]


def _metric(row: dict[str, Any], metric: str) -> dict[str, Any] | None:
    return (row.get("dev") or {}).get(metric)


def _fmt_pm(s: dict[str, Any] | None, n: bool = False) -> str:
    """`0.884 ± 0.005 (3)`; one run: `0.760 (1)`; without `n`, no count."""
    if not s:
        return "–"
    text = f"{s['mean']:.3f}"
    if s.get("sd") is not None:
        text += f" ± {s['sd']:.3f}"
    return text + (f" ({s['n']})" if n else "")


def _wall_minutes(report: dict[str, Any], row: dict[str, Any]) -> str:
    """Mean wall time of the student's own stage per seed, from the report's timings (timing.json of each run),
    with how many of them had the machine to themselves."""
    folders = {str(Path(f).parent) for f in row.get("files", [])}
    times = [t for t in report.get("timings") or [] if t.get("folder") in folders]
    if not times:
        return "not recorded"
    mean = sum(t["wall_seconds"] for t in times) / len(times) / 60
    alone = sum(1 for t in times if t.get("alone"))
    return f"{mean:.0f} min/seed ({alone} of {len(times)} alone)"


def figures(entry: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """The figures one index entry gives, read from its report."""
    report = load_report(entry, root)
    metric, rows = entry["metric"], entry["rows"]
    eid = entry["id"]
    constant = find_row(report, {"kind": "constant"}, "constant", eid)
    teacher = find_row(report, rows["teacher"], "teacher", eid)
    student = find_row(report, rows["student"], "student", eid)
    baseline = find_row(report, rows["baseline"], "baseline", eid) if rows.get("baseline") else None
    for name, row in (("constant", constant), ("teacher", teacher), ("student", student), ("baseline", baseline)):
        if row is not None and _metric(row, metric) is None:
            raise ResultsIndexError(f"{INDEX}: {eid}: the {name} row has no dev {metric}")
    gap = (student.get("gap_closed") or {}).get(metric)
    speed = student.get("speedup")
    params = student.get("parameters")
    return {
        "constant": _fmt_pm(_metric(constant, metric)),
        "teacher": _fmt_pm(_metric(teacher, metric)),
        "student": _fmt_pm(_metric(student, metric), n=True),
        "baseline": _fmt_pm(_metric(baseline, metric), n=True) if baseline else "–",
        "gap": f"{gap['mean']:.0%}" if gap else "–",
        "speedup": f"{speed['mean']:.1f}x" if speed else "–",
        "size": f"{params / 1e6:.1f}M params" if params else "–",
        "wall": _wall_minutes(report, student),
    }


COLUMNS = ["task", "metric", "constant", "teacher", "student mean ± sd (n)", "no-distillation baseline",
           "gap closed", "speed-up (batch 32)", "size", "wall time (student)", "settings chosen on", "source"]


def _link(path: str, page_dir: str) -> str:
    """`path` (from the repository root) relative to the folder `page_dir` (from the root) of the page linking it."""
    return Path(os.path.relpath(path, page_dir or ".")).as_posix()


def table(index: dict[str, Any], page_dir: str, root: Path = ROOT) -> str:
    """The results-of-record table for a page in the folder `page_dir` (relative to the repository root)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for entry in index["tasks"]:
        page = (f"[{entry['title']}]({_link(str(RESULTS_README.parent / entry['page']), page_dir)})"
                if entry.get("page") else entry["title"])
        if entry.get("placeholder"):
            cells = [page, entry.get("metric", ""), *(["*pending*"] * 8), entry["selected_on"],
                     "**placeholder**: " + entry["placeholder_note"]]
        else:
            f = figures(entry, root)
            cells = [page, entry["metric"], f["constant"], f["teacher"], f["student"], f["baseline"], f["gap"],
                     f["speedup"], f["size"], f["wall"], entry["selected_on"],
                     f"[report.json]({_link(entry['report'], page_dir)})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


READ_ME = """\
- **constant**: the majority training label's dev score, the floor. **gap closed** = (student − constant) /
  (teacher − constant): 0% is the floor, 100% the teacher.
- **student**: mean ± sample standard deviation over n seeds on the task's dev set. **no-distillation baseline**:
  the same student fine-tuned on the labels alone, with as many optimiser steps and dev evaluations.
- **speed-up**: the teacher's dev-set inference time over the student's, PyTorch on CPU, batch 32, timed in the
  same process. **wall time**: the student's task stage per seed, from each run's `timing.json`; "alone" means
  other processes used under 5% of the machine meanwhile.
- **settings chosen on**: *dev* means the recipe's settings were picked by scores on the same dev set the table
  reports, which flatters the student; see each task's page for what was picked and for held-out figures.
"""


def held_out_table(held: dict[str, Any]) -> list[str]:
    """Dev against held-out test figures of the same runs (settings were picked on dev, so test is the fair read)."""
    out = [f"Dev against the labelled test split, from {held['source']}:", "",
           "| seed | dev: student / baseline (gap closed) | test: student / baseline (gap closed) |", "|---|---|---|"]
    for run in held["runs"]:
        cells = [str(run["seed"])] + [
            f"{run[s]['student']:.3f} / {run[s]['baseline']:.3f} ({run[s]['gap_closed']:.0%})" for s in ("dev", "test")]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def results_readme(index: dict[str, Any], root: Path = ROOT) -> str:
    """docs/results/README.md: the table, how to read it, and each row's provenance."""
    out = ["# Results of record", "",
           "<!-- Generated by `python -m tinydistill.results` from results.json; edit that file, not this one. -->",
           "", "One row per task: the current result, read from the committed `report.json` it links to.", "",
           table(index, str(RESULTS_README.parent), root), READ_ME, "## Where each row comes from", ""]
    for entry in index["tasks"]:
        out.append(f"### {entry['title']}")
        out.append("")
        if entry.get("placeholder"):
            out += [f"**Placeholder.** {entry['placeholder_note']}", ""]
        else:
            out += [f"- report: [`{entry['report']}`]({_link(entry['report'], str(RESULTS_README.parent))}), rows: "
                    + ", ".join(f"{k} `{json.dumps(v, ensure_ascii=False)}`" for k, v in entry["rows"].items()),
                    f"- committed at `{entry['commit']}` on {entry['date']}; CPU: {entry['cpu']}",
                    f"- command: `{entry['command']}`"]
        out.append(f"- settings chosen: {entry['selection']}")
        out += [f"- caveat: {c}" for c in entry.get("caveats", [])]
        out.append("")
        if entry.get("held_out_test"):
            out += held_out_table(entry["held_out_test"])
    out += ["## Other pages", "", *[f"- [{title}]({href})" for title, href in index.get("pages", [])], ""]
    return "\n".join(out)


def readme_with_table(readme: str, index: dict[str, Any], root: Path = ROOT) -> str:
    """`readme` with the text between the results markers replaced by the current table."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ResultsIndexError(f"{README}: markers {BEGIN} ... {END} not found")
    return readme[: start + len(BEGIN)] + "\n" + table(index, "", root) + readme[end:]


def page_with_rows(text: str, index: dict[str, Any], root: Path = ROOT) -> str:
    """A task page with each `<!-- results:<id>:begin -->` ... `<!-- results:<id>:end -->` block replaced by that
    entry's row of the table (links from docs/results/)."""
    for entry in index["tasks"]:
        begin, end = f"<!-- results:{entry['id']}:begin -->", f"<!-- results:{entry['id']}:end -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0:
            continue
        if stop < start:
            raise ResultsIndexError(f"{begin} without {end}")
        one = table({**index, "tasks": [entry]}, str(RESULTS_README.parent), root)
        text = text[: start + len(begin)] + "\n" + one + text[stop:]
    return text


def generate(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file's expected text, by path relative to `root`: docs/results/README.md, the README's table
    and the rows embedded in the task pages."""
    index = load_index(root)
    out = {
        RESULTS_README: results_readme(index, root),
        README: readme_with_table((root / README).read_text(encoding="utf-8"), index, root),
    }
    for page in sorted({e["page"] for e in index["tasks"] if e.get("page")}):
        rel = RESULTS_README.parent / page
        if (root / rel).is_file():
            out[rel] = page_with_rows((root / rel).read_text(encoding="utf-8"), index, root)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated file is stale")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    a = p.parse_args(argv)
    stale = []
    for rel, text in generate(a.root).items():
        path = a.root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if a.check:
            stale.append(str(rel))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    if stale:
        print(f"stale: {', '.join(stale)} (run `python -m tinydistill.results`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
