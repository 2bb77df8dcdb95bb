"""Helpers of the gallery-store tests (test_store_contract.py and each store's own tests): clustered
vectors like an embedding model's, their paths, top-1 labels."""
import numpy as np

DIM = 32


def class_vectors(n_classes, per_class, seed, first=0, noise=0.25, dim=DIM):
    """Vectors clustered around one random centre per class (what an embedding model gives)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1000 + first).standard_normal((n_classes, dim))
    vecs, labels = [], []
    for c in range(n_classes):
        vecs.append(centres[c] + noise * rng.standard_normal((per_class, dim)))
        labels += [f"class {first + c}"] * per_class  # labels may contain spaces
    return np.concatenate(vecs).astype(np.float32), labels


def paths_for(labels, tag):
    return [f"{lab}/{tag}_{i}.jpg" for i, lab in enumerate(labels)]


def top1(gallery, vectors):
    labels, _, _ = gallery.search(vectors, k=1)
    return [row[0] for row in labels]
