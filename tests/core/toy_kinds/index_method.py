"""A toy index method: exact search (FAISS's flat index; Milvus's FLAT) that asks FAISS for twice the
candidates it returns."""
import faiss

from ppshitu.gallery.index_methods import IndexMethod


class ToyMethod(IndexMethod):
    milvus_type = "FLAT"

    def candidates(self, k):
        return 2 * k

    def create(self, train_vectors):
        return faiss.IndexIDMap(faiss.IndexFlat(self.dim, self.metric))
