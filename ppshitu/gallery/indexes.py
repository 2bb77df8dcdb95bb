"""The index methods by `IndexProcess.index_method` name: one line each, naming the class that implements
it (an `index_methods.IndexMethod`: its FAISS index and its Milvus index), imported on first use. The
names are the config's choices (schemas.py) without importing faiss.

A new method: a class subclassing `IndexMethod` (in index_methods.py, or a module of its own that imports
index_methods, never this one) and its line here.
"""
from ..registry import Registry

INDEX_METHODS = Registry("index_method", {
    "Flat": "ppshitu.gallery.index_methods:FlatMethod",
    "HNSW32": "ppshitu.gallery.index_methods:HNSWMethod",
    "IVF": "ppshitu.gallery.index_methods:IVFMethod",
    "IVFPQ": "ppshitu.gallery.index_methods:IVFPQMethod",
})
INDEX_METHODS.add("FLAT", "ppshitu.gallery.index_methods:FlatMethod", alias_of="Flat")  # PP-ShiTu spells it both ways
