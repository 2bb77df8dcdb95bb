"""The gallery: FAISS index + SQLite label store + manifest with atomic updates (or a Milvus collection).

Adding images of a new class is all it takes to recognise it (open-set).

    from ppshitu.gallery import Gallery, GalleryError, INDEX_METHODS

The names below load on first use (module __getattr__): importing a gallery module (base.py, to check a
config or open a Milvus gallery) does not import faiss.
"""

# public name -> the module that defines it
_API = {
    "Gallery": "ppshitu.gallery.gallery",
    "GalleryError": "ppshitu.gallery.errors",
    "INDEX_METHODS": "ppshitu.gallery.indexes",
}
__all__ = list(_API)


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'ppshitu.gallery' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_API})
