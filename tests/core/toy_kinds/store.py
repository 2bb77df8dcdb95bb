"""A toy gallery store: galleries in this process's memory (one dict per location), searched by brute force."""
import numpy as np

from ppshitu.errors import ConfigError
from ppshitu.gallery.errors import GalleryError
from ppshitu.gallery.interface import GalleryNotFound, GalleryStore, item_fields, removal_targets

GALLERIES = {}  # location -> {meta..., "items": {id: (vector, label, path, box)}, "next_id", "version"}


class ToyStore(GalleryStore):
    def __init__(self, location):
        self.index_dir, self._g = location, GALLERIES[location]

    # ---- where, open, create
    @classmethod
    def location_of(cls, index_process):
        if not index_process.get("index_dir"):
            raise ConfigError("IndexProcess.index_dir is required (the toy gallery's name)")
        return str(index_process["index_dir"]), {}

    @classmethod
    def exists(cls, location):
        return location in GALLERIES

    @classmethod
    def check_creatable(cls, location, overwrite=False, index_method=None):
        if location in GALLERIES and not overwrite:
            raise GalleryError(f"{location}: a gallery already exists")

    @classmethod
    def open(cls, location, model_fingerprint=None, embedding_size=None):
        if location not in GALLERIES:
            raise GalleryNotFound(f"{location}: no gallery there")
        g = cls(location)
        g.check_model(model_fingerprint, embedding_size)
        return g

    @classmethod
    def create(cls, location, embedding_size, dist_type="IP", index_method="HNSW32", model_fingerprint=None,
               overwrite=False, vectors=None, labels=None, paths=None, boxes=None, **index_params):
        cls.check_creatable(location, overwrite)
        GALLERIES[location] = {"embedding_size": embedding_size, "dist_type": dist_type, "index_method": index_method,
                               "model_fingerprint": model_fingerprint, "items": {}, "next_id": 0, "version": 0}
        g = cls(location)
        if vectors is not None:
            g.add(vectors, labels, paths, boxes, model_fingerprint)
        return g

    # ---- reading
    def _model_record(self):
        return self._g
    version = property(lambda self: str(self._g["version"]))
    manifest = property(lambda self: {k: v for k, v in self._g.items() if k != "items"})

    def __len__(self):
        return len(self._g["items"])

    def records(self, ids=None):
        items = self._g["items"]
        ids = sorted(items) if ids is None else [int(i) for i in ids if int(i) in items]
        return [{"id": i, "label": items[i][1], "path": items[i][2], "box": items[i][3]} for i in ids]

    def label_counts(self):
        counts = {}
        for _, label, _, _ in self._g["items"].values():
            counts[label] = counts.get(label, 0) + 1
        return counts

    def get_vectors(self, ids):
        missing = [int(i) for i in ids if int(i) not in self._g["items"]]
        if missing:
            raise GalleryError(f"{self.index_dir}: no gallery item {missing[0]}")
        return np.array([self._g["items"][int(i)][0] for i in ids], np.float32).reshape(len(ids), self.embedding_size)

    def existing_paths(self, paths):
        stored = {item[2] for item in self._g["items"].values()}
        return {p for p in paths if p in stored}

    def iter_items(self, batch_size=8192):
        ids = np.array(sorted(self._g["items"]), np.int64)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            yield chunk, self.get_vectors(chunk), self.records(chunk)

    def search(self, vectors, k=5):
        q = self._as_matrix(vectors, "query vectors")
        ids = np.array(sorted(self._g["items"]), np.int64)
        found = np.full((len(q), k), -1, np.int64)
        scores = np.full((len(q), k), -np.inf if self.higher_is_better else np.inf, np.float32)
        if len(ids):
            stored = self.get_vectors(ids)
            s = q @ stored.T if self.higher_is_better else ((q[:, None] - stored[None]) ** 2).sum(-1)
            order = np.argsort(-s if self.higher_is_better else s, axis=1, kind="stable")[:, :k]
            found[:, :order.shape[1]] = ids[order]
            scores[:, :order.shape[1]] = np.take_along_axis(s, order, 1)
        labels = [[self._g["items"][int(i)][1] if i >= 0 else None for i in row] for row in found]
        return labels, scores, found

    def set_search_params(self, ef_search=None, nprobe=None):
        if ef_search is not None or nprobe is not None:
            raise GalleryError("a toy gallery has no search parameters")
        return self

    def refresh(self):
        return self

    # ---- writing
    def add(self, vectors, labels, paths=None, boxes=None, model_fingerprint=None):
        if model_fingerprint is not None:
            self.check_model(model_fingerprint)
        v = self._as_matrix(vectors, "vectors")
        labels, paths, boxes = item_fields(len(v), labels, paths, boxes)
        seen, ids = self.existing_paths(paths), np.full(len(v), -1, np.int64)
        for i, (label, path, box) in enumerate(zip(labels, paths, boxes)):
            if path is None or path not in seen:
                seen.add(path)
                ids[i] = self._g["next_id"]
                self._g["items"][int(ids[i])] = (v[i], label, path, box)
                self._g["next_id"] += 1
        if self._g["model_fingerprint"] is None:
            self._g["model_fingerprint"] = model_fingerprint
        self._g["version"] += 1
        return ids

    def remove(self, labels=None, paths=None):
        labels, paths = removal_targets(labels, paths)
        gone = [i for i, (_, label, path, _) in self._g["items"].items() if label in labels or path in paths]
        for i in gone:
            del self._g["items"][i]
        self._g["version"] += 1
        return np.asarray(sorted(gone), np.int64)

    def compact(self):
        return len(self)
