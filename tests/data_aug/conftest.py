"""Fixtures of the data_aug tests: a small GLUE folder (MRPC rows) in tmp_path, one torch thread."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


MRPC_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


MRPC_ROWS = [
    ["1", "702876", "702977", "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting his evidence.",
     "Referring to him as only \"the witness\", Amrozi accused his brother of deliberately distorting his evidence."],
    ["0", "2108705", "2108831", "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion.",
     "Yucaipa bought Dominick's in 1995 for $693 million and sold it to Safeway for $1.8 billion in 1998."],
    ["1", "1330381", "1330521", "They had published an advertisement on the Internet on June 10, offering the cargo for sale.",
     "On June 10, the ship's owners had published an advertisement on the Internet, offering the explosives for sale."],
    ["0", "3344667", "3344648", "Around 0335 GMT, Tab shares were up 19 cents, or 4.4%, at A$4.56.",
     "Tab shares jumped 20 cents, or 4.6%, to set a record closing high at A$4.57."],
    ["1", "1236820", "1236712", "The stock rose $2.11, or about 11 percent, to close Friday at $21.51 on the New York Stock Exchange.",
     "PG&E Corp. shares jumped $1.63 or 8 percent to $21.03 on the New York Stock Exchange on Friday."],
    ["1", "738533", "737951", "Revenue in the first quarter of the year dropped 15 percent from the same period a year earlier.",
     "With the scandal hanging over Stewart's company, revenue the first quarter of the year dropped 15 percent."],
    ["0", "264589", "264502", "The Nasdaq had a weekly gain of 17.27, or 1.2 percent, closing at 1,520.15 on Friday.",
     "The tech-laced Nasdaq Composite Index rose 20.19 points, or 1.3 percent, to 1,602.58."],
]


def find_data_dir() -> Path | None:
    env = os.environ.get("TINYDISTILL_DATA_DIR")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (c / "glove").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from 2 threads, and on a busy 2-core machine OpenMP threads that
    wait for each other make every small op slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    d = tmp_path / "data" / "glue" / "MRPC"
    d.mkdir(parents=True)
    with open(d / "train.tsv", "w", encoding="utf-8", newline="") as f:
        f.write("\ufeff")  # like the official MRPC train.tsv
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        w.writerow(MRPC_HEADER)
        w.writerows(MRPC_ROWS)
    return tmp_path / "data"
