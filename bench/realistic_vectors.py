"""Gallery-like vectors for search benchmarks: the neighbour structure of real embeddings, at any size.

Random unit vectors (bench_search.py) have every neighbour almost equally far (nearest-neighbour
cosine ~0.15 at 512-d), the worst case for approximate search. A real gallery is a few photos of
each of many objects: its vectors sit in tight per-class clusters, the clusters are spread over a
subspace of far fewer than 512 dimensions, and classes differ in how tight they are.

    from bench.realistic_vectors import realistic_vectors
    vectors, labels = realistic_vectors(1_000_000, dim=512, seed=0)

The model (what the demo model's embeddings show: a strong common direction, class centres spread over
few dimensions, each class varying across its photos in a few directions of its own), per class c:
    centre_c = normalize(m + tan(acos(mean_cos)) * B z_c)      z_c ~ N(0, diag(i^-centre_decay)), i <= centre_dims
    vector   = normalize(centre_c + s_c * U_c u)               u ~ N(0, I_view_dims / view_dims)
m a fixed unit vector, B an orthonormal basis orthogonal to it, U_c view_dims random basis directions of
class c's own, s_c = tan(acos(centre_cos)) * lognormal(spread_sigma). The defaults were fitted by a
grid (decay, view_dims, centre_cos, mean_cos) to the nearest-neighbour cosine quantiles and the share of
same-class nearest neighbours of the demo's trained model (models/demo/rec) on 2,100 images of 210
synthetic classes it never trained on; `main` prints both side by side:

    .venv/bin/python bench/realistic_vectors.py            # writes bench/results/realistic_vectors.md
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# fitted to the demo model's embeddings of 210 unseen classes x 10 views (bench/results/realistic_vectors.md)
DEFAULTS = dict(views_per_class=10, mean_cos=0.8, centre_dims=128, centre_decay=2.5, centre_cos=0.92,
                spread_sigma=0.15, view_dims=16)


def _normalize(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def realistic_vectors(n, dim=512, seed=0, chunk=4096, **params):
    """(float32 [n, dim] unit vectors, int64 [n] class ids): views_per_class vectors per class."""
    p = {**DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    views = int(p["views_per_class"])
    n_classes = -(-n // views)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32).T  # rows: orthonormal
    centre_dims = min(int(p["centre_dims"]), dim - 1)
    mean_dir, centre_basis = basis[0], basis[1:1 + centre_dims]
    scales = (1.0 + np.arange(centre_dims, dtype=np.float32)) ** (-p["centre_decay"] / 2)
    scales /= np.linalg.norm(scales)
    tan_mean = np.tan(np.arccos(p["mean_cos"]))
    tan_view = np.tan(np.arccos(p["centre_cos"]))
    r = int(p["view_dims"])
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), views)[:n]
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cls = labels[start:stop]
        first, k = int(cls[0]), int(cls[-1]) - int(cls[0]) + 1
        crng = np.random.default_rng([seed, 1, first])  # per chunk: reproducible, any chunking of classes
        z = crng.standard_normal((k, centre_dims), dtype=np.float32) * scales
        centres = _normalize(mean_dir + tan_mean * (z @ centre_basis))
        spread = tan_view * np.exp(p["spread_sigma"] * crng.standard_normal(k).astype(np.float32))
        # each class varies across its photos in its own few directions (r of the basis' rows)
        dirs = np.argsort(crng.random((k, dim)), axis=1)[:, :r]
        vrng = np.random.default_rng([seed, 2, start])
        u = vrng.standard_normal((stop - start, r), dtype=np.float32) / np.sqrt(r)
        coords = np.zeros((stop - start, dim), np.float32)  # u at the class's own r coordinates of `basis`
        np.put_along_axis(coords, dirs[cls - first], u, axis=1)
        offsets = coords @ basis
        out[start:stop] = _normalize(centres[cls - first] + spread[cls - first, None] * offsets)
    return out, labels


def nn_cosines(vectors, labels=None):
    """Per vector: cosine to its nearest other vector, and whether that neighbour has its label."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    d, i = index.search(vectors, 2)
    self_first = i[:, 0] == np.arange(len(vectors))
    nn = np.where(self_first, i[:, 1], i[:, 0])
    cos = np.where(self_first, d[:, 1], d[:, 0])
    same = None if labels is None else labels[nn] == labels
    return cos, same


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summary(vectors, labels):
    """Quantiles of the nearest-neighbour cosine, the share whose nearest neighbour is of its class,
    the cosine to the class centre, and the dimensions holding 90 % of the variance."""
    cos, same = nn_cosines(vectors, labels)
    centres = np.zeros((labels.max() + 1, vectors.shape[1]), np.float32)
    np.add.at(centres, labels, vectors)
    centres = _normalize(centres + 1e-12)
    to_centre = np.einsum("nd,nd->n", vectors, centres[labels])
    ev = np.linalg.svd(vectors - vectors.mean(0), compute_uv=False) ** 2
    dims90 = int(np.searchsorted(np.cumsum(ev) / ev.sum(), 0.9)) + 1
    return {"nn": np.quantile(cos, QUANTILES), "same": float(same.mean()),
            "centre": float(np.median(to_centre)), "dims90": dims90}


def real_embeddings(cache, num_classes=250, views=10, first_unseen=40):
    """The demo model's (models/demo/rec) embeddings of synthetic classes it never trained on:
    (vectors, labels), made once into `cache`."""
    path = os.path.join(cache, f"demo_rec_{num_classes}x{views}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return z["vectors"], z["labels"]
    from dataset.synthetic import make_recognition_set
    from ppshitu.api import load_inference_config
    from ppshitu.embedder import Embedder
    from ppshitu.infer import factory

    root = os.path.join(cache, "recset")
    if not os.path.exists(os.path.join(root, "gallery_list.txt")):
        make_recognition_set(root, num_classes=num_classes, views_per_class=views, image_size=96,
                             num_train_classes=first_unseen, gallery_views=3, seed=0)
    cfg = load_inference_config(os.path.join(ROOT, "configs/inference/inference_general.yaml"),
                                [f"Global.rec_inference_model_dir={ROOT}/models/demo/rec",
                                 "Global.det_inference_model_dir="])
    rec = factory.rec_predictor(cfg)
    files = [(c, os.path.join(root, "images", f"class_{c:04d}", f"{v:03d}.jpg"))
             for c in range(first_unseen, num_classes) for v in range(views)]
    emb = Embedder.from_config(cfg, rec).embed_files([f for _, f in files], desc="demo model embeddings")
    labels = np.asarray([files[i][0] for i in emb.index], np.int64) - first_unseen
    vectors = _normalize(np.asarray(emb.vectors, np.float32))
    os.makedirs(cache, exist_ok=True)
    np.savez(path, vectors=vectors, labels=labels)
    return vectors, labels


def _row(name, s):
    return [name] + [f"{q:.3f}" for q in s["nn"]] + [f"{s['same']:.3f}", f"{s['centre']:.3f}", str(s["dims90"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "ppshitu_bench_real"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "realistic_vectors.md"))
    args = ap.parse_args()
    from ppshitu.utils.cpu import describe

    t = time.perf_counter()
    real, labels = real_embeddings(args.cache)
    dim = real.shape[1]
    header = ["vectors"] + [f"NN cos q{int(q * 100):02d}" for q in QUANTILES] + \
             ["NN same class", "cos to class centre (median)", "dims for 90 % variance"]
    rows = [_row(f"demo model, {len(real)} images of {labels.max() + 1} unseen classes", summary(real, labels))]
    gen, glabels = realistic_vectors(len(real), dim, seed=1)
    rows.append(_row(f"realistic_vectors, same size ({len(real)})", summary(gen, glabels)))
    rnd = _normalize(np.random.default_rng(1).standard_normal(real.shape).astype(np.float32))
    rows.append(_row(f"random unit vectors ({len(real)})", summary(rnd, glabels)))
    big, blabels = realistic_vectors(100_000, dim, seed=2)
    rows.append(_row("realistic_vectors, 100,000", summary(big, blabels)))
    from bench.bench_search import table

    text = (f"{table(rows, header)}\n\nNN cos: cosine of each vector to its nearest other vector (quantiles). "
            f"Generator parameters: {DEFAULTS}.\n{describe()}; {time.perf_counter() - t:.0f} s\n")
    print(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(f"# bench/realistic_vectors.py {' '.join(sys.argv[1:])}\n\n{text}")


if __name__ == "__main__":
    main()
