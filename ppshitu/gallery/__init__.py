"""The gallery: FAISS index + SQLite label store + manifest, with atomic updates.

Adding images of a new class is all it takes to recognise it (open-set)."""
from .errors import GalleryError
from .gallery import Gallery
from .indexes import INDEX_METHODS

__all__ = ["Gallery", "GalleryError", "INDEX_METHODS"]
