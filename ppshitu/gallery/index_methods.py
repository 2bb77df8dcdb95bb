"""The index methods (PP-ShiTu's `index_method` names: gallery/indexes.py's INDEX_METHODS names these
classes), each owning how every store builds it: the FAISS index (gallery.py) and the Milvus index
(milvus_store.py) with their parameters.

FAISS: every index maps stable int64 ids (IndexIDMap, or IVF's own ids). A method knows
how to train an empty index for a given amount of data, whether FAISS can
delete from it (HNSW cannot: removed ids are filtered at search time until a
compaction rebuilds it), and the search-time parameters.
Milvus: `milvus_type` (the server's index type), `milvus_params(n)` (build and search parameters for a
gallery created with n vectors), `milvus_search_keys` (set_search_params' names for its search parameters)
and `milvus_search_params(params, limit)` (one search call's). A FAISS gallery tunes
efSearch / nprobe on its own vectors at build (search_tuning.py, stored in its manifest);
the defaults below apply until then (an empty gallery) and on Milvus: the ones that kept
recall@1 against exact search >= 0.95 on random 512-d galleries queried with vectors that
have a true match (bench/bench_search.py), far more than clustered real embeddings need
for IVF (bench/bench_search_tuned.py).
"""
import math
import warnings

import faiss

from .errors import GalleryError

METRICS = {"IP": faiss.METRIC_INNER_PRODUCT, "L2": faiss.METRIC_L2}
MIN_POINTS_PER_CENTROID = 39  # below this FAISS' k-means warns and clusters poorly
MILVUS_DEFAULT_NLIST = 128    # IVF on a Milvus gallery created empty (FAISS trains on its first add)


class IndexMethod:
    can_remove = True       # FAISS remove_ids works on this index
    rerank_factor = 0       # >0: fetch k * factor candidates and rescore them exactly with the raw vectors
    retrain_growth = None   # rebuild (retrain) once the gallery outgrows its training set this many times

    def __init__(self, dim, dist_type):
        if dist_type not in METRICS:
            raise GalleryError(f"dist_type must be one of {sorted(METRICS)}, got {dist_type!r}")
        self.dim, self.dist_type, self.metric = dim, dist_type, METRICS[dist_type]

    def candidates(self, k):
        """How many results to ask FAISS for, to return the best k."""
        return k

    def params(self):
        """What the manifest records, so the gallery reopens with the same settings."""
        return {}

    def create(self, train_vectors):
        """An empty index with stable ids, trained on `train_vectors` when it needs training."""
        raise NotImplementedError

    def search_params(self, index, selector):
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    # ---- Milvus
    milvus_type = None        # Milvus's index_type for this method; None: no Milvus counterpart
    milvus_search_keys = {}   # set_search_params argument -> the Milvus search parameter it sets

    def milvus_params(self, n_vectors):
        """(build params, search params) of the Milvus index of a gallery created with `n_vectors`."""
        return {}, {}

    def milvus_search_params(self, params, limit):
        """The search params of one Milvus search call that returns `limit` hits."""
        return params


class FlatMethod(IndexMethod):
    """Exact search; the reference the other methods' recall is measured against."""
    milvus_type = "FLAT"

    def create(self, train_vectors):
        return faiss.IndexIDMap(faiss.IndexFlat(self.dim, self.metric))


class HNSWMethod(IndexMethod):
    can_remove = False
    milvus_type = "HNSW"
    milvus_search_keys = {"ef_search": "ef"}

    def __init__(self, dim, dist_type, ef_search=None, ef_construction=40):
        super().__init__(dim, dist_type)
        # before tuning (search_tuning.py): FAISS' default efSearch (16) loses much of recall@1 on 512-d
        # vectors (0.81 on 100k realistic ones, bench_search_tuned.py); 100k random ones need 512 for >= 0.95
        self.ef_search = ef_search or 512
        self.ef_construction = ef_construction

    def params(self):
        return {"ef_search": self.ef_search, "ef_construction": self.ef_construction}

    def create(self, train_vectors):
        hnsw = faiss.IndexHNSWFlat(self.dim, 32, self.metric)
        hnsw.hnsw.efConstruction = self.ef_construction
        hnsw.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap(hnsw)

    def search_params(self, index, selector):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)

    def milvus_params(self, n_vectors):
        return {"M": 32, "efConstruction": int(self.ef_construction)}, {"ef": int(self.ef_search)}

    def milvus_search_params(self, params, limit):
        return {**params, "ef": max(params["ef"], limit)}  # Milvus refuses ef < limit


class IVFMethod(IndexMethod):
    retrain_growth = 4
    milvus_type = "IVF_FLAT"
    milvus_search_keys = {"nprobe": "nprobe"}

    def __init__(self, dim, dist_type, nlist=None, nprobe=None):
        super().__init__(dim, dist_type)
        self.nlist, self.nprobe = nlist, nprobe

    def params(self):
        return {"nlist": self.nlist, "nprobe": self.nprobe}

    def lists_for(self, n):
        """nlist from the data size (~4 sqrt(n), >= 39 points per list), unless configured. Fewer
        lists or k-means on fewer points build 2-3x faster but, probing the same fraction of the
        lists, lost recall@1 (0.92-0.94 < 0.95, bench_search.py)."""
        auto = max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))
        if self.nlist is None:
            return auto
        if self.nlist > n:
            warnings.warn(f"IndexProcess.nlist={self.nlist} exceeds the {n} vectors to train on; using {n}")
            return n
        return self.nlist

    def probes(self, nlist):
        # 512-d vectors need about a fifth of the lists for recall@1 >= 0.95 with weak matches (measured)
        return min(nlist, self.nprobe or max(16, math.ceil(nlist / 5)))

    def _quantizer(self):
        return faiss.IndexFlat(self.dim, self.metric)

    def _empty(self, quantizer, nlist):
        return faiss.IndexIVFFlat(quantizer, self.dim, nlist, self.metric)

    def create(self, train_vectors):
        if len(train_vectors) == 0:
            raise GalleryError("an IVF index needs vectors to train on")
        quantizer = self._quantizer()
        index = self._empty(quantizer, self.lists_for(len(train_vectors)))
        # k-means on 64 points per list (FAISS samples 256) and 10 rounds: ~10x faster
        # training on large galleries; nprobe, not centroid polish, sets the recall
        index.cp.max_points_per_centroid = 64
        index.cp.niter = 10
        index.train(train_vectors)
        index.nprobe = self.probes(index.nlist)
        return index

    def search_params(self, index, selector):
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.probes(faiss.extract_index_ivf(index).nlist))

    def milvus_params(self, n_vectors):
        nlist = int(self.lists_for(n_vectors) if n_vectors else (self.nlist or MILVUS_DEFAULT_NLIST))
        return {"nlist": nlist}, {"nprobe": int(self.probes(nlist))}


def pq_subquantizers(dim, pq_m, dims_per_code):
    """IndexProcess.pq_m checked, or by default the most sub-quantizers that divide `dim` with at least
    `dims_per_code` dimensions each."""
    m = pq_m or max(m for m in range(1, dim // dims_per_code + 1) if dim % m == 0)
    if dim % m:
        raise GalleryError(f"IndexProcess.pq_m={m} must divide embedding_size={dim}")
    return m


class IVFPQMethod(IVFMethod):
    """Compressed codes for large galleries; the candidates are rescored exactly with
    the raw vectors (memory-mapped from disk: FAISS; returned with the hits: Milvus), which restores recall@1."""
    milvus_type = "IVF_PQ"

    def __init__(self, dim, dist_type, nlist=None, nprobe=None, pq_m=None, rerank_factor=10):
        super().__init__(dim, dist_type, nlist, nprobe)
        self.pq_m = pq_subquantizers(dim, pq_m, dims_per_code=8)
        self.rerank_factor = rerank_factor
        self._n_train = 0

    def params(self):
        return {**super().params(), "pq_m": self.pq_m, "rerank_factor": self.rerank_factor}

    def candidates(self, k):
        # rescoring a few hundred raw vectors costs little next to scanning the lists
        return max(k * self.rerank_factor, 100)

    def _empty(self, quantizer, nlist):
        # 2**nbits codewords need ~39 training points each: fewer bits for small galleries.
        nbits = int(min(8, max(1, math.floor(math.log2(max(2, self._n_train) / MIN_POINTS_PER_CENTROID)))))
        return faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, nbits, self.metric)

    def create(self, train_vectors):
        if len(train_vectors) < 2:
            raise GalleryError("an IVFPQ index needs at least 2 vectors to train on")
        self._n_train = len(train_vectors)
        return super().create(train_vectors)

    def milvus_params(self, n_vectors):
        # 8-bit codes (Milvus's default), candidates re-scored exactly (as the FAISS IVFPQ gallery)
        build, search = super().milvus_params(n_vectors)
        return {**build, "m": int(self.pq_m), "nbits": 8}, search


class IVFSQ8Method(IVFMethod):
    """IVF whose lists hold one byte per dimension (FAISS's 8-bit scalar quantizer on the residuals) instead of
    float32: a query scans a quarter of the bytes. The few best candidates are re-scored exactly with the raw
    vectors, so the answers are IVF's: on 100k realistic 512-d vectors (bench/realistic_vectors.py) recall@1 vs
    exact was IVF's at every nprobe (0.934 / 0.959 / 0.971 at 8 / 12 / 16) at ~1.8x its queries per CPU-second;
    8-bit codes alone lose 0.3-0.7 point. `index_method: auto` from indexes.FLAT_BELOW (to LARGE_FROM on FAISS,
    always on Milvus)."""
    milvus_type = "IVF_SQ8"

    def __init__(self, dim, dist_type, nlist=None, nprobe=None, rerank_factor=4):
        super().__init__(dim, dist_type, nlist, nprobe)
        self.rerank_factor = rerank_factor

    def params(self):
        return {**super().params(), "rerank_factor": self.rerank_factor}

    def candidates(self, k):
        return k * self.rerank_factor

    def _empty(self, quantizer, nlist):
        return faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, self.metric)


class IVFPQFastScanMethod(IVFMethod):
    """IVF whose lists hold 4-bit product-quantizer codes scanned with SIMD table lookups (FAISS fast-scan; one
    code per `pq_m` sub-vectors, dim / 4 by default: 64 bytes for 512-d), the best `rerank_factor` candidates
    re-scored exactly with the raw vectors. The codes are built in L2 even for an IP gallery: its vectors and
    queries are unit vectors, whose L2 order is their IP order, and 4-bit PQ of inner products on the residuals of
    vectors that share one strong common direction (as embeddings do) ranked the true top-1 out of 64 candidates
    for only 0.62-0.70 of 100k realistic queries where L2 codes kept 0.93-0.96 (bench/realistic_vectors.py,
    nlist 1264, nprobe 8-16). Scanning a list costs ~1/4 of 8-bit codes (IVFSQ8): ~3x its queries per CPU-second
    at recall@1 0.95 there. The pool: with 64 candidates recall@1 levelled off at 0.96 on 1M realistic vectors
    (0.963 at nprobe 192), under the tuner's 0.98; 256 reach 0.983 at nprobe 128, 3,280 queries per CPU-second of
    2 cores (Zen 4; 100k: 0.988 at nprobe 32, 7,087). Milvus has no fast-scan index."""
    milvus_type = None

    def __init__(self, dim, dist_type, nlist=None, nprobe=None, pq_m=None, rerank_factor=256):
        super().__init__(dim, dist_type, nlist, nprobe)
        self.pq_m = pq_subquantizers(dim, pq_m, dims_per_code=4)
        self.rerank_factor = rerank_factor

    def params(self):
        return {**super().params(), "pq_m": self.pq_m, "rerank_factor": self.rerank_factor}

    def candidates(self, k):
        # one pool for k = 1 and the tuner's k = 2, so the tuned nprobe is measured on what a k=1 search re-scores
        return max(self.rerank_factor, 4 * k)

    def _quantizer(self):
        return faiss.IndexFlat(self.dim, faiss.METRIC_L2)

    def _empty(self, quantizer, nlist):
        return faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, self.pq_m, 4, faiss.METRIC_L2)

    def create(self, train_vectors):
        if len(train_vectors) < 16 * MIN_POINTS_PER_CENTROID // 2:
            raise GalleryError(f"an IVFPQFS index needs at least {16 * MIN_POINTS_PER_CENTROID // 2} vectors to "
                               f"train its 4-bit codes on, got {len(train_vectors)}")
        return super().create(train_vectors)
