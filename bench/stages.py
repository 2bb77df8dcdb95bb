"""One benchmark stage per process: `python bench/stages.py STAGE '{"impl": ..., ...}'`.

Each stage function takes its args dict and returns a metrics dict; `main` adds the
process's peak RSS and prints it as the last line (see harness.py). `impl` is `ppshitu`
(this project) or `pp-shitu` (PaddleClas 2.6's deploy/python, through shitu_reference.py). ppshitu's
stages take `backend` (paddle | openvino) and `precision` (fp32 | bf16 | int8), as Global.inference_backend
and Global.precision.
"""
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, emit, timed  # noqa: E402

import numpy as np  # noqa: E402

REF = "pp-shitu"
OURS = "ppshitu"
STAGES = {}


def stage(fn):
    STAGES[fn.__name__] = fn
    return fn


def _read_rgb(path):
    from ppshitu.utils.image import read_image

    return read_image(path)


def _ref_config(a, **kw):
    import shitu_reference

    return shitu_reference.shitu_config(a["rec_dir"], a.get("det_dir"), threads=a.get("threads", 2),
                                  mkldnn=a.get("mkldnn", True), **kw)


# --------------------------------------------------------------------------- CPU peak
@stage
def cpu_peak(a):
    """fp32 GEMM rate (numpy/OpenBLAS, all cores): the attainable peak the models are compared to."""
    n = a.get("n", 4096)
    x = np.random.default_rng(0).random((n, n), dtype=np.float32)
    sec = timed(lambda: x @ x, a.get("seconds", 2.0), min_iters=3)
    return {"sgemm_gflops": 2 * n ** 3 / sec / 1e9, "n": n}


# --------------------------------------------------------------------------- recognition model
def _ours_rec_runner(a):
    return _ours_rec(a).predict_batch


def _ref_rec_runner(a):
    """The model alone as PaddleClas's Predictor configured it (memory optim, zero copy, oneDNN
    cache 10): its own RecPredictor.predict also preprocesses, which this row leaves out."""
    import shitu_reference

    rec = shitu_reference.rec_predictor(_ref_config(a))
    p = rec.predictor
    inp = p.get_input_handle(p.get_input_names()[0])
    out = p.get_output_handle(p.get_output_names()[0])

    def run(x):
        inp.copy_from_cpu(x)
        p.run()
        return out.copy_to_cpu()
    return run


@stage
def rec_model(a):
    """images/s of the recognition model alone (preprocessed input) at each batch size."""
    run = (_ref_rec_runner if a["impl"] == REF else _ours_rec_runner)(a)
    rng = np.random.default_rng(0)
    out = {}
    for bs in a["batches"]:
        x = rng.standard_normal((bs, 3, 224, 224), dtype=np.float32)
        emb = run(x)
        assert emb.shape == (bs, 512), emb.shape
        out[f"bs{bs}"] = bs / timed(lambda: run(x), a["seconds"])
    return {"images_per_s": out}


# --------------------------------------------------------------------------- detector
@stage
def det(a):
    """ms/image of the detector on decoded scene images, its own preprocessing included."""
    images = [_read_rgb(p) for p in a["images"]]
    if a["impl"] == REF:
        import shitu_reference

        d = shitu_reference.det_predictor(_ref_config(a, max_det_results=a["max_det"]))
        count = lambda img: len(d.predict(img))  # noqa: E731
    else:
        from ppshitu.infer.det import DetPredictor

        d = DetPredictor(a["det_dir"], threshold=0.0, max_det_results=a["max_det"],
                         enable_mkldnn=a.get("mkldnn", True), cpu_threads=a.get("threads", 2), **_runtime(a))
        count = lambda img: len(d.predict(img))  # noqa: E731
    count(images[0])  # warm-up: oneDNN builds its kernels on the first run
    boxes, start = 0, time.perf_counter()
    for img in images:
        boxes += count(img)
    ms = (time.perf_counter() - start) * 1000 / len(images)
    return {"ms_per_image": ms, "boxes_per_image": boxes / len(images), "images": len(images)}


# --------------------------------------------------------------------------- gallery build
def _ref_gallery(a):
    """GalleryBuilder's own build(): list -> cv2.imread -> RecPredictor.predict per batch of 32 ->
    faiss index -> vector.index + id_map.pkl. The predictor is created (and warmed with one
    batch) before the clock starts, as for ppshitu."""
    import shitu_reference
    from paddleclas.deploy.python.build_gallery import GalleryBuilder

    cfg = _ref_config(a, index_dir=a["index_dir"], image_root=a["image_root"], data_file=a["list_file"],
                      index_method=a.get("index_method", "HNSW32"))
    builder = GalleryBuilder.__new__(GalleryBuilder)
    builder.config, builder.android_demo = cfg, False
    builder.rec_predictor = shitu_reference.rec_predictor(cfg)
    bs = cfg["IndexProcess"]["batch_size"]
    builder.rec_predictor.predict([np.zeros((224, 224, 3), np.uint8)] * bs)
    start = time.perf_counter()
    builder.build(cfg["IndexProcess"])
    return time.perf_counter() - start


def _runtime(a):
    """ppshitu's runtime choice for a stage: `backend` paddle | openvino, `precision` fp32 | bf16 | int8."""
    if a.get("backend") == "openvino":
        from ppshitu.infer import openvino_runtime  # noqa: F401  (registers it before a config is checked)
    return _runtime_keys(a)


def _runtime_keys(a):
    return {"backend": a.get("backend", "paddle"), "precision": a.get("precision", "fp32")}


def _ours_rec(a):
    from ppshitu.infer.rec import RecPredictor

    return RecPredictor(a["rec_dir"], enable_mkldnn=a.get("mkldnn", True), cpu_threads=a.get("threads", 2),
                        **_runtime(a))


def gallery_overrides(a):
    """The `-o` overrides of configs/inference/build_gallery.yaml for a bench gallery: here and for
    tools/build_gallery.py in run_all's whole-process rows."""
    ip = {"index_method": a.get("index_method", "HNSW32"), "image_root": a["image_root"],
          "index_dir": a["index_dir"], "data_file": a["list_file"], "index_operation": "new"}
    rt = _runtime_keys(a)
    return ([f"IndexProcess.{k}={v}" for k, v in ip.items()] +
            [f"Global.cpu_num_threads={a.get('threads', 2)}", f"Global.rec_inference_model_dir={a['rec_dir']}",
             f"Global.inference_backend={rt['backend']}", f"Global.precision={rt['precision']}"])


def _ours_gallery(a):
    """tools/build_gallery.py's pipeline (ppshitu.gallery.builder.build_gallery) on the shipped
    config with the benchmark's paths; the predictor is created and warmed before the clock starts."""
    import faiss

    from ppshitu.config import load_config
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.schemas import INFER_SCHEMA

    _runtime(a)
    cfg = load_config(ROOT / "configs/inference/build_gallery.yaml", gallery_overrides(a), INFER_SCHEMA)
    faiss.omp_set_num_threads(a.get("threads", 2))
    rec = _ours_rec(a)
    bs = cfg["IndexProcess"]["batch_size"]
    rec.predict_batch(np.zeros((bs, 3, 224, 224), np.float32))
    start = time.perf_counter()
    summary = build_gallery(cfg, rec=rec)
    seconds = time.perf_counter() - start
    assert summary["count"] == a["num_images"], summary
    return seconds


@stage
def gallery(a):
    """images/s of a whole gallery build: read list, decode, embed, index, save."""
    shutil.rmtree(a["index_dir"], ignore_errors=True)
    seconds = (_ref_gallery if a["impl"] == REF else _ours_gallery)(a)
    return {"images_per_s": a["num_images"] / seconds, "seconds": seconds, "images": a["num_images"]}


# --------------------------------------------------------------------------- predict_system
class _CountingRec:
    """Counts the crops a pipeline sends to recognition, and in how many model calls."""

    def __init__(self, rec, method):
        self._rec, self._method, self.crops, self.calls = rec, method, 0, 0
        setattr(self, method, self._counted)

    def _counted(self, images, *args, **kwargs):
        self.calls += 1
        self.crops += len(images) if isinstance(images, list) or getattr(images, "ndim", 3) == 4 else 1
        return getattr(self._rec, self._method)(images, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._rec, name)


def system_overrides(a):
    """The `-o` overrides of configs/inference/inference_general.yaml for the bench's predict_system:
    here and for tools/predict_system.py in run_all's whole-process rows."""
    rt = _runtime_keys(a)
    overrides = {"Global.rec_inference_model_dir": a["rec_dir"], "Global.det_inference_model_dir": a["det_dir"],
                 "Global.threshold": 0.0, "Global.max_det_results": a["max_det"],
                 "Global.cpu_num_threads": a.get("threads", 2), "Global.enable_mkldnn": a.get("mkldnn", True),
                 "IndexProcess.index_dir": a["index_dir"], "IndexProcess.embedding_size": 512,
                 "Global.inference_backend": rt["backend"], "Global.precision": rt["precision"]}
    return [f"{k}={v}" for k, v in overrides.items()]


def _ours_system(a):
    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.system import RecognitionSystem

    _runtime(a)
    cfg = load_config(ROOT / "configs/inference/inference_general.yaml", system_overrides(a), INFER_SCHEMA)
    system = RecognitionSystem.from_config(cfg)
    system.rec = counter = _CountingRec(system.rec, "predict_batch")
    return system.predict, counter


def _ref_system(a):
    import shitu_reference

    cfg = _ref_config(a, max_det_results=a["max_det"], index_dir=a["index_dir"])
    system = shitu_reference.system_predictor(cfg)
    system.rec_predictor = counter = _CountingRec(system.rec_predictor, "predict")
    return system.predict, counter


@stage
def system(a):
    """ms/image of the full query path: det -> crops -> rec -> search -> NMS. `folder: false`:
    on decoded images, one call each (latency). `folder: true`: from the files, as each tool runs
    over a folder: PP-ShiTu's main() loop (cv2.imread, predict; drawing left out), ppshitu's
    predict_paths (next images decoded in threads while the models run)."""
    system_fn = _ref_system if a["impl"] == REF else _ours_system
    predict, counter = system_fn(a)
    predict(_read_rgb(a["images"][0]))  # warm-up: oneDNN builds its kernels on the first run
    counter.crops = counter.calls = 0
    if a.get("folder"):
        start = time.perf_counter()
        if a["impl"] == REF:
            import cv2

            for path in a["images"]:
                predict(cv2.imread(path)[:, :, ::-1])
        else:
            for _ in predict.__self__.predict_paths(a["images"]):
                pass
    else:
        images = [_read_rgb(p) for p in a["images"]]
        start = time.perf_counter()
        for img in images:
            predict(img)
    n = len(a["images"])
    ms = (time.perf_counter() - start) * 1000 / n
    return {"ms_per_image": ms, "crops_per_image": counter.crops / n, "rec_calls_per_image": counter.calls / n,
            "images": n}


# --------------------------------------------------------------------------- search
def _ref_index(method, vectors):
    """The index PP-ShiTu's GalleryBuilder makes: its own _create_index and _add_gallery."""
    import shitu_reference
    from paddleclas.deploy.python import build_gallery as pb

    cfg = shitu_reference.shitu_config("", index_method=method)["IndexProcess"]
    builder = pb.GalleryBuilder.__new__(pb.GalleryBuilder)
    if method == "IVF":
        # as shipped, _create_index reads an undefined global `gallery_images` for IVF (NameError)
        pb.gallery_images = vectors
    with tempfile.TemporaryDirectory() as tmp:  # _create_index makes its index_dir; not in the caller's cwd
        _, index, ids = builder._create_index(dict(cfg, index_dir=os.path.join(tmp, "index")))
    index, _ = builder._add_gallery(index, ids, vectors, [f"p{i}\tc{i % 1000}" for i in range(len(vectors))],
                                    cfg, "new")
    return index


@stage
def search(a):
    """Per index method: build seconds, QPS (one batched search, k=1) and recall@1 against exact
    search on random unit 512-d vectors (bench_search.py's data): QPS and recall on `near` queries
    (a gallery vector plus noise: a photo of an indexed object), recall also on `random` ones."""
    import faiss
    import tempfile

    from bench_search import exact_top1, near_queries, random_unit

    faiss.omp_set_num_threads(a.get("threads", 2))
    cache = Path(a["cache"]) if a.get("cache") else None
    if cache is not None and (cache / "base.npy").is_file():
        # written once per size; memory-mapped, so both pipelines start from the same bytes
        base = np.load(cache / "base.npy", mmap_mode="r")
        queries, random_q, truth, random_truth = (np.load(cache / f"{k}.npy") for k in
                                                  ("near", "random", "near_truth", "random_truth"))
    else:
        base = random_unit(a["n"], seed=a["n"])
        queries, random_q = near_queries(base, a["queries"], seed=2), random_unit(a["queries"], seed=1)
        truth, random_truth = exact_top1(base, queries), exact_top1(base, random_q)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            for k, v in (("near", queries), ("random", random_q), ("near_truth", truth),
                         ("random_truth", random_truth), ("base", base)):
                np.save(cache / f"{k}.npy", v)
    import shitu_reference  # noqa: F401  (imports outside the clock)
    from paddleclas.deploy.python import build_gallery  # noqa: F401
    from ppshitu.gallery import Gallery
    out = {}
    for method in a["methods"]:
        start = time.perf_counter()
        if a["impl"] == REF:
            index = _ref_index(method, base)
            build = time.perf_counter() - start
            search_fn, setting = (lambda q: index.search(q, 1)[1]), _ref_setting(index)
        else:
            tmp = tempfile.mkdtemp(prefix="bench_search_")
            g = Gallery.create(os.path.join(tmp, "g"), base.shape[1], dist_type="IP", index_method=method,
                               vectors=base, labels=[f"c{i % 1000}" for i in range(len(base))])
            build = time.perf_counter() - start
            search_fn, setting = (lambda q: g.search(q, k=1)[2]), _ours_setting(g)
        t = time.perf_counter()
        ids = np.asarray(search_fn(queries))
        qps = len(queries) / (time.perf_counter() - t)
        recall_random = float(np.mean(np.asarray(search_fn(random_q))[:, 0] == random_truth))
        out[method] = {"build_s": build, "qps": qps, "recall_at_1": float(np.mean(ids[:, 0] == truth)),
                       "recall_at_1_random": recall_random, "setting": setting}
        if a["impl"] != REF:
            g.close()
            shutil.rmtree(tmp, ignore_errors=True)
    return {"n": a["n"], "methods": out}


def _ours_setting(g):
    import faiss

    if hasattr(g.method, "ef_search"):
        return {"ef_search": g.method.ef_search}
    if hasattr(g.method, "probes"):
        nlist = faiss.extract_index_ivf(g.index).nlist
        return {"nlist": nlist, "nprobe": g.method.probes(nlist)}
    return {}


def _ref_setting(index):
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if hasattr(inner, "hnsw"):
        return {"ef_search": inner.hnsw.efSearch}
    if hasattr(inner, "nprobe"):
        return {"nlist": inner.nlist, "nprobe": inner.nprobe}
    return {}


def main(argv):
    name, args = argv[0], json.loads(argv[1])
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    emit(STAGES[name](args))


if __name__ == "__main__":
    main(sys.argv[1:])
