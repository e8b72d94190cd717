"""The search behind identification: a faiss inner-product index over speaker rows.

    index = SpeakerIndex.build(rows, ids)           # exact, or IVF from APPROXIMATE_FROM rows
    scores, ids = index.search(queries, k)          # best first; -1 ids pad a short answer
    index.add(ids, rows); index.remove(ids)         # in place, no rebuild

Rows are the scorer's search rows (:meth:`voiceprint.scoring.Scorer.search_rows`), whose
inner product with a probe's search row is the scorer's score, AS-norm included, so the
exact index ranks exactly as a brute-force pass over every speaker does.

* Exact: ``IndexIDMap2(IndexFlatIP)``. One query reads every row: about 3 ms per 100,000
  192-dim speakers on one core.
* Approximate: ``IndexIVFFlat`` (inner product), ``nlist`` ~ 4 sqrt(N) k-means cells of
  which ``nprobe`` are read per query. Rows are stored uncompressed, so the scores of the
  candidates it finds are exact; only a true best speaker in an unread cell is missed
  (recall@1 measured by ``benchmarks/identification_scale.py``). IVF rather than HNSW:
  on 2 cores it builds a million speakers in about a minute, HNSW in tens of minutes,
  and it removes rows in place, HNSW only marks them.

Without faiss (it is the ``[scale]`` extra) the same interface runs on numpy, exact only.
The plain reference it is held to is a test oracle (``tests/oracles.py``).
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

# faiss's loader logs at INFO which CPU build it tried (an AVX2 one that is absent, then
# the generic one): noise for the user of a CLI, not a problem.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
try:  # the [scale] extra
    import faiss
except ImportError:  # pragma: no cover - exercised when faiss is absent
    faiss = None

APPROXIMATE_FROM = 200_000
"""Galleries of at least this many speakers get the IVF index, smaller ones the exact one.

Measured by ``benchmarks/identification_scale.py`` (192 dims, one thread per query,
``benchmarks/results/identification_scale.md``): the exact index costs 0.5 ms a query at
10k speakers, 4.3 ms at 100k and 30 ms at 1M (p99 36 ms; 140 ms when the 2 cores were
shared with other jobs): linear, about 3-4 ms per 100k. IVF answers in 0.24 ms at 100k
and 1.6 ms (p99 6.2 ms) at 1M, at recall@1 99.8% against exact search, but needs a
k-means training (5 s at 100k, ~50 s at 1M on 2 cores) and can miss a best match. At
200,000 the exact search still costs ~8 ms, far under the 50 ms target, so below it
exactness wins; above it the exact cost climbs toward the target while IVF's stays flat.
"""


SEARCH_THREADS = 1
"""OpenMP threads one query may use. One: a single query gains little from a second thread
(IVF reads a few thousand rows), and on a busy machine OpenMP's barriers made 2-thread
queries 10-100x slower in the benchmark; concurrent requests use the other cores."""
EXACT_BELOW_FRACTION = 0.5  # an IVF gallery shrunk below half the threshold goes exact
RETRAIN_GROWTH = 4.0  # an IVF gallery grown 4x past its training size is rebuilt
_KMEANS_ITERATIONS = 10
_TRAIN_POINTS_PER_CELL = 40  # faiss warns below 39


def ivf_cells(n: int) -> int:
    """The number of IVF cells for ``n`` rows: the power of two nearest 4 sqrt(n)."""
    return 2 ** max(4, round(math.log2(4 * math.sqrt(max(n, 1)))))


def ivf_probes(nlist: int) -> int:
    """Cells read per query: nlist / 32, at least 16 (recall@1 >= 99.9% in the benchmark)."""
    return min(nlist, max(16, nlist // 32))


class SpeakerIndex:
    """Rows (N, d) float32 under int64 ids, searched by inner product, updated in place."""

    def __init__(self, dim: int, kind: str, impl: object, trained_on: int = 0) -> None:
        self.dim = dim
        self.kind = kind  # "exact" | "ivf" | "numpy"
        self.trained_on = trained_on
        self._impl = impl

    # -- building -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        rows: np.ndarray,
        ids: np.ndarray,
        approximate_from: int = APPROXIMATE_FROM,
        nprobe: int | None = None,
        dim: int | None = None,
    ) -> SpeakerIndex:
        """The index for ``rows`` (N, d) under ``ids`` (N,): exact below ``approximate_from``
        rows, IVF from it (``nprobe`` cells per query; default :func:`ivf_probes`)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        dim = rows.shape[1] if dim is None else dim
        if rows.ndim != 2 or rows.shape[1] != dim or len(ids) != len(rows):
            raise ValueError(f"rows {rows.shape} and ids {ids.shape} do not agree on {dim} dims")
        n = len(rows)
        if faiss is None:
            index = cls(dim, "numpy", _NumpyFlat(dim))
        elif n >= approximate_from:
            index = cls(dim, "ivf", _train_ivf(rows, nprobe), trained_on=n)
        else:
            index = cls(dim, "exact", faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        if n:
            index.add(ids, rows)
        return index

    def stale_for(self, n: int, approximate_from: int = APPROXIMATE_FROM) -> bool:
        """Whether a gallery of ``n`` rows should get a new index of another kind or size."""
        if self.kind == "exact":
            return n >= approximate_from
        if self.kind == "ivf":
            return n < EXACT_BELOW_FRACTION * approximate_from or n > RETRAIN_GROWTH * max(
                self.trained_on, 1
            )
        return False

    # -- updating -----------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._impl.ntotal)  # type: ignore[attr-defined]

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add rows under new ids (an id already present must be removed first)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(rows):
            self._impl.add_with_ids(rows, ids)  # type: ignore[attr-defined]

    def remove(self, ids: np.ndarray) -> int:
        """Remove the rows of ``ids`` (absent ids are ignored); returns how many went."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        if self.kind == "ivf":  # the hashtable direct map removes through an id array
            selector = faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))
            return int(self._impl.remove_ids(selector))  # type: ignore[attr-defined]
        return int(self._impl.remove_ids(ids))  # type: ignore[attr-defined]

    # -- searching ----------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` largest inner products of each query (M, d): scores and ids (M, k)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if faiss is None or self.kind == "numpy":
            return self._impl.search(queries, k)  # type: ignore[attr-defined]
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(min(before, SEARCH_THREADS))
        try:
            return self._impl.search(queries, k)  # type: ignore[attr-defined]
        finally:
            faiss.omp_set_num_threads(before)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The stored rows of ``ids`` (present ones), (len(ids), d) float32."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._impl.reconstruct(int(i)) for i in ids])  # type: ignore[attr-defined]

    def nbytes(self) -> int:
        """The index's size when serialised: its rows, ids and cell lists."""
        if self.kind == "numpy":
            return self._impl.nbytes()  # type: ignore[attr-defined]
        return int(faiss.serialize_index(self._impl).nbytes)


def _train_ivf(rows: np.ndarray, nprobe: int | None) -> object:
    n, dim = rows.shape
    nlist = min(ivf_cells(n), max(1, n // _TRAIN_POINTS_PER_CELL))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = _KMEANS_ITERATIONS
    ivf.cp.seed = 1234
    sample = rows
    wanted = _TRAIN_POINTS_PER_CELL * nlist
    if n > wanted:
        pick = np.random.default_rng(0).choice(n, size=wanted, replace=False)
        sample = rows[np.sort(pick)]
    ivf.train(sample)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove and reconstruct by id
    ivf.nprobe = nprobe or ivf_probes(nlist)
    log.info("IVF index: %d cells, %d read per query, trained on %d rows", nlist, ivf.nprobe, n)
    return ivf


class _NumpyFlat:
    """The exact index on numpy, for installs without faiss: rows and ids, swap-removed."""

    def __init__(self, dim: int) -> None:
        self._rows = np.zeros((0, dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._where: dict[int, int] = {}

    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def add_with_ids(self, rows: np.ndarray, ids: np.ndarray) -> None:
        start = len(self._ids)
        self._rows = np.concatenate([self._rows, rows])
        self._ids = np.concatenate([self._ids, ids])
        self._where.update({int(i): start + j for j, i in enumerate(ids)})

    def remove_ids(self, ids: np.ndarray) -> int:
        gone = {int(i) for i in ids} & self._where.keys()
        if gone:
            keep = ~np.isin(self._ids, np.fromiter(gone, dtype=np.int64))
            self._rows, self._ids = self._rows[keep], self._ids[keep]
            self._where = {int(i): j for j, i in enumerate(self._ids)}
        return len(gone)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self._rows.T
        n = scores.shape[1]
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        kk = min(k, n)
        if kk:
            best = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            part = np.take_along_axis(scores, best, axis=1)
            order = np.argsort(-part, axis=1, kind="stable")
            out_s[:, :kk] = np.take_along_axis(part, order, axis=1)
            out_i[:, :kk] = self._ids[np.take_along_axis(best, order, axis=1)]
        return out_s, out_i

    def reconstruct(self, i: int) -> np.ndarray:
        return self._rows[self._where[i]]

    def nbytes(self) -> int:
        return int(self._rows.nbytes + self._ids.nbytes)
