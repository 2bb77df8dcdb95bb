"""Import a PP-ShiTu index directory (vector.index + id_map.pkl) into a Gallery.

PP-ShiTu stores labels as a pickled dict {id: "image_path<delimiter>label"}, and
loading a pickle can run arbitrary code. This reader's unpickler builds only
dicts, ints, strings and the numpy int64 scalars PP-ShiTu's builder writes as
keys (decoded from raw bytes into plain ints); any other class is refused.
"""
import io
import os
import pickle
import struct

import faiss
import numpy as np

from .errors import GalleryError
from .gallery import Gallery

_NUMPY_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_NUMPY_DTYPE = {("numpy", "dtype")}
_INT_CODES = {f"{k}{n}" for k in "iu" for n in (1, 2, 4, 8)}
MAX_INDEX_DIM = 1 << 16  # embedding sizes are hundreds to a few thousand


def _int_dtype(code, align=False, copy=True):
    if code not in _INT_CODES:
        raise pickle.UnpicklingError(f"refusing numpy dtype {code!r}: only integer ids are expected")
    return np.dtype(code)


def _int_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu" or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("refusing a numpy scalar that is not an integer id")
    return int(np.frombuffer(data, dtype)[0])


class IdMapUnpickler(pickle.Unpickler):
    """Plain dicts, ints and strings only (numpy integer scalars become ints)."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY_SCALAR:
            return _int_scalar
        if (module, name) in _NUMPY_DTYPE:
            return _int_dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: an id map holds only ints and strings")


def read_id_map(path):
    """{int id: str doc} from PP-ShiTu's id_map.pkl, refusing anything else."""
    from ..utils.files import MAX_LIST_BYTES, read_input_bytes

    raw = read_input_bytes(path, "PP-ShiTu id map", MAX_LIST_BYTES, GalleryError, missing=f"{path}: missing")
    try:  # (regular files only, at most MAX_LIST_BYTES: utils/files.py)
        data = IdMapUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise GalleryError(f"{path}: not a plain PP-ShiTu id map ({e})") from None
    except RecursionError:
        raise GalleryError(f"{path}: not a plain PP-ShiTu id map (nested too deeply)") from None
    if not isinstance(data, dict):
        raise GalleryError(f"{path}: expected a dict of id -> 'path<TAB>label', got {type(data).__name__}")
    bad = [(k, v) for k, v in data.items() if not isinstance(k, int) or not isinstance(v, str)]
    if bad:  # (types, not repr: a deeply nested value's repr would recurse without end)
        k, v = bad[0]
        shown = lambda x: repr(x)[:80] if isinstance(x, (int, str)) else f"a {type(x).__name__}"  # noqa: E731
        raise GalleryError(f"{path}: expected int ids and string entries, got {shown(k)} -> {shown(v)}")
    return data


def split_doc(doc, delimiter="\t"):
    """PP-ShiTu keeps each data-file line whole: 'relpath<delimiter>label' -> (path, label)."""
    doc = doc.strip()
    parts = doc.split(delimiter, 1) if delimiter in doc else doc.split(None, 1)
    if len(parts) == 2 and parts[1].strip():
        return parts[0], parts[1].strip()
    return None, doc  # a bare label (PP-ShiTu's Android demo galleries)


def _inner_method(index, path):
    kind = type(index).__name__
    if kind.startswith("IndexHNSW"):
        return "HNSW32", {"ef_search": max(index.hnsw.efSearch, 128)}
    if kind == "IndexIVFPQ":
        return "IVFPQ", {"nlist": index.nlist}
    if kind.startswith("IndexIVF"):
        return "IVF", {"nlist": index.nlist}
    if kind.startswith("IndexFlat"):
        return "Flat", {}
    raise GalleryError(f"{path}: unsupported FAISS index type {kind} (supported: HNSW, IVF, IVFPQ, Flat)")


def read_ppshitu_index(index_dir):
    """(ids int64 [n], vectors float32 [n, d], dist_type, index_method, index_params)."""
    path = os.path.join(index_dir, "vector.index")
    if not os.path.lexists(path):
        raise GalleryError(f"{path}: missing (not a PP-ShiTu index directory)")
    if not os.path.isfile(path):
        raise GalleryError(f"{path}: not a regular file (not a PP-ShiTu index directory)")
    index = _read_sized_index(path)
    wrapped = isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2))
    inner = faiss.downcast_index(index.index if wrapped else index)
    method, params = _inner_method(inner, path)
    ivf = method in ("IVF", "IVFPQ")
    if ivf:
        inner.make_direct_map()  # reconstruct() needs id -> list position
    if wrapped:  # what PP-ShiTu writes: the inner index numbers vectors 0..n-1
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        vectors = inner.reconstruct_n(0, inner.ntotal)
    elif ivf:    # an IVF keeps its own ids in its lists
        ids = np.sort(_ivf_ids(inner))
        vectors = np.stack([inner.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, inner.d))
    else:
        ids, vectors = np.arange(inner.ntotal, dtype=np.int64), inner.reconstruct_n(0, inner.ntotal)
    dist_type = "IP" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "L2"
    return ids, np.asarray(vectors, np.float32), dist_type, method, params


def _available_memory():
    """Bytes of memory this process may still fill (psutil's `available`: free plus reclaimable cache)."""
    import psutil

    return int(psutil.virtual_memory().available)


def _check_index_header(path, head, size):
    """Refuse, before FAISS allocates anything, an index whose header (every FAISS index starts with its
    fourcc, d as int32 and ntotal as int64) describes more vectors than this machine can import (the import
    holds them as float32 about twice), or a file larger than the memory it would be read into."""
    if len(head) < 16:
        raise GalleryError(f"{path}: {size} bytes, too short for a FAISS index header")
    d, ntotal = struct.unpack_from("<iq", head, 4)
    if not 0 < d <= MAX_INDEX_DIM or not 0 <= ntotal <= 1 << 48:
        raise GalleryError(f"{path}: its header says {ntotal} vectors of {d} dimensions: not a FAISS index "
                           f"ppshitu can import (damaged?)")
    need, available = 2 * 4 * d * ntotal, _available_memory()
    gib = lambda n: f"{n / 2**30:.1f} GiB"  # noqa: E731
    if size > available:
        raise GalleryError(f"{path}: {size} bytes, more than the {gib(available)} of memory free to read it into "
                           f"(its header says {ntotal} vectors of {d} dimensions: {4 * d * ntotal} bytes of "
                           f"vectors); not imported")
    if need > available:
        raise GalleryError(f"{path}: its header says {ntotal} vectors of {d} dimensions; importing them needs about "
                           f"{gib(need)} of memory, {gib(available)} is free; not imported")


def _read_sized_index(path):
    """faiss.read_index of the regular file `path`, read through a counting reader: the header is checked
    first (_check_index_header), and bytes after the index the header describes (a padded or damaged file:
    a 30 GB sparse file behind a 2 KB index was imported silently) are refused, naming the file."""
    from ..utils.files import open_input

    with open_input(path, "PP-ShiTu index", max_bytes=1 << 50, error=GalleryError) as f:  # (memory: below)
        size = os.stat(path).st_size
        _check_index_header(path, f.peek(16)[:16], size)
        read = [0]

        def chunk(n):
            data = f.read(n)
            read[0] += len(data)
            return data

        try:
            index = faiss.read_index(faiss.PyCallbackIOReader(chunk))
        except RuntimeError as e:
            raise GalleryError(f"{path}: cannot read it as a float FAISS index (binary/hamming indexes are "
                               f"not supported): {str(e).splitlines()[0]}") from None
        if f.read(1):
            raise GalleryError(f"{path}: {size} bytes, but the index its header describes ({index.ntotal} vectors "
                               f"of {index.d} dimensions) ends at byte {read[0]}: {size - read[0]} bytes of "
                               f"trailing data (a damaged or padded file); not imported")
    return index


def _ivf_ids(ivf):
    lists = ivf.invlists
    return np.concatenate([np.zeros(0, np.int64)] + [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)
        if lists.list_size(i)]).astype(np.int64)


def _refuse_conflicting_labels(src_dir, ids, docs):
    """One image path under two or more labels is an error naming the path and its labels (build_gallery's
    rule: an image has one label), never silently one item."""
    seen = {}
    for i, (p, label) in zip(ids, docs):
        if p is not None:
            seen.setdefault(p, {}).setdefault(label, int(i))
    conflicts = [(p, labels) for p, labels in seen.items() if len(labels) > 1]
    if conflicts:
        shown = "; ".join(f"{p!r} is " + ", ".join(f"{lab!r} (id {i})" for lab, i in list(labels.items())[:5])
                          + (f" and {len(labels) - 5} more" if len(labels) > 5 else "") for p, labels in conflicts[:5])
        raise GalleryError(f"{src_dir}/id_map.pkl: {len(conflicts)} image path(s) under two or more labels (an "
                           f"image has one label; fix the PP-ShiTu data file and rebuild): {shown}"
                           + ("; ..." if len(conflicts) > 5 else ""))


def convert_ppshitu_index(src_dir, out_dir, delimiter="\t", index_method=None, overwrite=False):
    """Write a Gallery at `out_dir` from PP-ShiTu's `src_dir`; returns it. The model that made the
    vectors is unknown, so the gallery records no fingerprint."""
    if not isinstance(delimiter, str) or not delimiter or "\n" in delimiter or "\r" in delimiter:
        raise GalleryError(f"delimiter {delimiter!r}: must be a non-empty string within one line")
    ids, vectors, dist_type, method, params = read_ppshitu_index(src_dir)
    id_map = read_id_map(os.path.join(src_dir, "id_map.pkl"))
    missing = [int(i) for i in ids if int(i) not in id_map]
    if missing or len(id_map) != len(ids):
        raise GalleryError(f"{src_dir}: vector.index holds {len(ids)} ids, id_map.pkl {len(id_map)}; "
                           f"{len(missing)} index ids have no entry (e.g. {missing[:3]})")
    docs = [split_doc(id_map[int(i)], delimiter) for i in ids]
    _refuse_conflicting_labels(src_dir, ids, docs)
    if index_method is not None and index_method != method:
        method, params = index_method, {}
    return Gallery.create(out_dir, int(vectors.shape[1]), dist_type=dist_type, index_method=method,
                          model_fingerprint=None, overwrite=overwrite, vectors=vectors,
                          labels=[lab for _, lab in docs], paths=[p for p, _ in docs], ids=ids, **params)
