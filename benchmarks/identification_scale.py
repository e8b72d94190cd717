"""1:N identification among 10k, 100k and 1M enrolled speakers: the store's faiss index.

    python benchmarks/identification_scale.py [--sizes 10000,100000,1000000] [--threads 2]
        [--probes 1000] [--exact-probes 100] [--asnorm] [--out benchmarks/results]

Speakers are random 192-dim embeddings around cluster centres (one centre per 50 speakers,
each speaker at cosine ~0.7 to its centre, ~0.5 to the others of its cluster); probes are
enrolled speakers plus noise (cosine ~0.9 to their own). For each size the speakers are
enrolled in a SQLite store (``enroll_many``), then identification runs through
``SpeakerDB.identify`` (top 5) with each index kind: "exact" (faiss IndexFlatIP) and
"ivf" (IVF-Flat, the store's default from ``APPROXIMATE_FROM`` speakers). Reported: the
build time (the first identify: reading the store and building the index; and
``SpeakerIndex.build`` alone on the rows in memory), memory per speaker (the index's own
bytes, and the process's RSS growth), p50/p99 query time on ``--threads`` threads (wall
clock, and CPU time, which a busy machine does not inflate), and recall@1 against exact
search (the product of every probe with every speaker model). ``--asnorm`` gives the
scorer a random AS-norm cohort (search rows of 2D+1 dims). Writes identification_scale.md
and .json to ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

THREADS = "2"
if "--threads" in sys.argv:
    THREADS = sys.argv[sys.argv.index("--threads") + 1]
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, THREADS)

import numpy as np  # noqa: E402

from voiceprint.scoring import Backend, Scorer  # noqa: E402
from voiceprint.store import APPROXIMATE_FROM, SpeakerDB, SpeakerIndex  # noqa: E402
from voiceprint.store import index as store_index  # noqa: E402
from voiceprint.store.sync import IndexState  # noqa: E402

DIM = 192


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_data(n: int, probes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, DIM) clustered speakers, (probes, DIM) probes near some of them, their targets."""
    rng = np.random.default_rng(seed)
    clusters = max(1, n // 50)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = rng.standard_normal((n, DIM), dtype=np.float32) / np.float32(np.sqrt(DIM))
    emb += centres[rng.integers(0, clusters, n)]
    targets = rng.integers(0, n, probes)
    noise = rng.standard_normal((probes, DIM), dtype=np.float32) * np.float32(0.5 / np.sqrt(DIM))
    unit = emb[targets] / np.linalg.norm(emb[targets], axis=1, keepdims=True)
    return emb, unit + noise, targets


def exact_top1(scorer: Scorer, emb: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Row of the best-scoring speaker for each probe, by brute force over every speaker."""
    models = scorer.units(emb).astype(np.float32)
    p_units = scorer.units(probes).astype(np.float32)
    if not scorer.backend.asnorm:  # plain cosine: one float32 product
        return np.argmax(models @ p_units.T, axis=0)
    stats = scorer.norm_stats(models)
    p_stats = scorer.norm_stats(p_units)
    best = np.empty(len(probes), dtype=np.int64)
    for start in range(0, len(probes), 100):
        chunk = slice(start, start + 100)
        s = scorer.score(models, p_units[chunk], stats, None if p_stats is None else p_stats[chunk])
        best[chunk] = np.argmax(s, axis=0)
    return best


def run_kind(
    path: Path | None,
    scorer: Scorer,
    kind: str,
    emb: np.ndarray,
    probes: np.ndarray,
    truth: np.ndarray,
    names: list,
) -> dict:
    """One index kind through ``SpeakerDB.identify``; ``path`` None: the index is built
    from the rows in memory and handed to an empty in-memory store (no SQL read)."""
    approximate_from = 0 if kind == "ivf" else 10**12
    gc.collect()
    before = rss_bytes()
    with SpeakerDB(path or ":memory:", "bench", scorer, approximate_from=approximate_from) as db:
        start = time.perf_counter()
        if path is None:
            models = scorer.units(emb).astype(np.float32)
            rows = scorer.search_rows(models, scorer.norm_stats(models))
            del models
            built = time.perf_counter()
            index = SpeakerIndex.build(rows, np.arange(len(rows)), approximate_from)
            faiss_build_s = time.perf_counter() - built
            del rows
            mapping = dict(zip(names, range(len(names)), strict=True))
            db._index.state = IndexState(index, 0, DIM, mapping, dict(enumerate(names)), len(names))
        db.identify(probes[0], top=5)  # with a store: reads it, builds the index
        build_s = time.perf_counter() - start
        gc.collect()
        grown = rss_bytes() - before
        index = db._index.state.index
        n = index.ntotal
        times, cpu, hits = [], [], 0
        for probe, want in zip(probes, truth, strict=True):
            start, start_cpu = time.perf_counter(), time.process_time()
            best = db.identify(probe, top=5)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            hits += best[0].name == names[want]
        cells = getattr(index._impl, "nlist", None)
        nprobe = getattr(index._impl, "nprobe", None)
        bytes_per = index.nbytes() / n
    del db, index
    gc.collect()
    if path is not None:  # the faiss build alone, on the rows in memory
        models = scorer.units(emb).astype(np.float32)
        rows = scorer.search_rows(models, scorer.norm_stats(models))
        del models
        start = time.perf_counter()
        SpeakerIndex.build(rows, np.arange(len(rows)), approximate_from=approximate_from)
        faiss_build_s = time.perf_counter() - start
        del rows
    ms = np.array(times) * 1e3
    cpu_ms = np.array(cpu) * 1e3
    return {
        "kind": kind,
        "through_store": path is not None,
        "speakers": n,
        "build_s": build_s,
        "faiss_build_s": faiss_build_s,
        "index_bytes_per_speaker": bytes_per,
        "rss_bytes_per_speaker": grown / n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
        "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
        "probes": len(probes),
        "recall_at_1": hits / len(probes),
        "nlist": cells,
        "nprobe": nprobe,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--exact-probes", type=int, default=100, help="probes for exact search")
    parser.add_argument("--asnorm", action="store_true", help="an AS-norm scorer (cohort 1000)")
    parser.add_argument(
        "--store-up-to",
        type=int,
        default=100_000,
        help="larger sizes skip the SQLite store: the index is built from the rows in memory "
        "and handed to an empty store (enrolling 1M rows takes minutes on a busy machine)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if store_index.faiss is None:
        raise SystemExit("this benchmark needs faiss: pip install 'voiceprint[scale]'")
    store_index.faiss.omp_set_num_threads(args.threads)  # builds; a query: SEARCH_THREADS
    scorer = Scorer()
    if args.asnorm:
        rng = np.random.default_rng(9)
        cohort = rng.standard_normal((1000, DIM))
        cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
        scorer = Scorer(Backend(cohort=cohort, asnorm_top=100))
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        emb, probes, _ = make_data(n, args.probes)
        names = [f"speaker{i:07d}" for i in range(n)]
        start = time.perf_counter()
        truth = exact_top1(scorer, emb, probes)
        exact_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path, enroll_s = None, None
            if n <= args.store_up_to:
                path = Path(tmp) / "bench.db"
                with SpeakerDB(path, "bench", scorer) as db:
                    start = time.perf_counter()
                    db.enroll_many(names, emb)
                    enroll_s = time.perf_counter() - start
            for kind in ("exact", "ivf"):
                count = args.exact_probes if kind == "exact" else args.probes
                row = run_kind(path, scorer, kind, emb, probes[:count], truth[:count], names)
                row.update(enroll_s=enroll_s, numpy_exact_s_per_probe=exact_s / len(probes))
                results.append(row)
                enrolled = "no store" if enroll_s is None else f"enroll {enroll_s:.1f} s"
                print(
                    f"{n:>9,} {kind:<5} build {row['build_s']:7.1f} s  "
                    f"index {row['index_bytes_per_speaker']:6.0f} B/spk  "
                    f"rss {row['rss_bytes_per_speaker']:6.0f} B/spk  "
                    f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                    f"cpu p50 {row['cpu_p50_ms']:6.2f} p99 {row['cpu_p99_ms']:6.2f} ms  "
                    f"recall@1 {100 * row['recall_at_1']:6.2f}%  ({enrolled})",
                    flush=True,
                )
            write(results, args, Path(args.out))  # after each size: a partial run keeps its rows
        del emb, probes
        gc.collect()


def write(results: list[dict], args: argparse.Namespace, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tag = "_asnorm" if args.asnorm else ""
    meta = {
        "threads": args.threads,
        "dim": DIM,
        "scorer": "AS-norm (cohort 1000, top 100)" if args.asnorm else "cosine",
        "approximate_from": APPROXIMATE_FROM,
        "search_threads": store_index.SEARCH_THREADS,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "faiss": store_index.faiss.__version__,
    }
    (out / f"identification_scale{tag}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    lines = [
        f"# Identification at scale ({meta['scorer']}, {DIM} dims, {args.threads} threads)",
        "",
        f"Builds use {args.threads} threads; each query uses {store_index.SEARCH_THREADS} "
        "(`voiceprint.store.index.SEARCH_THREADS`), the other core serving another request.",
        "",
        "`python benchmarks/identification_scale.py"
        + (" --asnorm" if args.asnorm else "")
        + f" --sizes {args.sizes}`; faiss {meta['faiss']}, {meta['machine']} (shared with a "
        "training run at the time: figures are upper bounds). Query: `SpeakerDB.identify(probe, "
        "top=5)` through the store (change-log check, search, rescoring by the scorer); "
        "store 'none': the index was built from the rows in memory and handed to an empty "
        "in-memory store, so build excludes reading the database. "
        "recall@1: the store's best speaker is exact search's best. p50/p99: wall-clock time per "
        "query; CPU p50/p99: the process's CPU time per query (both threads), which scheduling "
        "delays on a busy machine do not inflate.",
        "",
        "| speakers | index | store | enroll (s) | build (s) | faiss build alone (s) "
        "| index B/speaker | RSS B/speaker | p50 (ms) | p99 (ms) | CPU p50 (ms) | CPU p99 (ms) "
        "| recall@1 | probes | cells / read |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = f"{r['nlist']} / {r['nprobe']}" if r["nlist"] else "-"
        lines.append(
            f"| {r['speakers']:,} | {r['kind']} | {'SQLite' if r['through_store'] else 'none'} | "
            f"{'-' if r['enroll_s'] is None else format(r['enroll_s'], '.1f')} | "
            f"{r['build_s']:.1f} | "
            f"{r['faiss_build_s']:.2f} | {r['index_bytes_per_speaker']:.0f} | "
            f"{r['rss_bytes_per_speaker']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['cpu_p50_ms']:.2f} | {r['cpu_p99_ms']:.2f} | "
            f"{100 * r['recall_at_1']:.2f}% | {r['probes']} | {cells} |"
        )
    (out / f"identification_scale{tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'identification_scale{tag}.md'}")


if __name__ == "__main__":
    main()
