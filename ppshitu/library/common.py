"""What the photo-library tools share: predictors, embedding files, and galleries through the store
interface (`ppshitu/gallery/base.py`) only, so every tool works on any gallery backend.

    rec, det = predictors(cfg, detect=False)
    emb = embedder(cfg, rec, det)                                 # ppshitu.embedder.Embedder, the config's options
    out = emb.embed_files(paths)                                  # Embedded (skips unreadable files)
    vector, box, rgb = emb.embed_file(path)                       # raises ImageReadError
    gallery = open_store(cfg.IndexProcess, rec)                   # checks the model
"""
import logging
import os

import numpy as np

from ..embedder import Embedder, image_options, read_checked
from ..errors import ConfigError
from ..gallery.base import open_gallery

log = logging.getLogger("ppshitu.library")


# ------------------------------------------------------------------ predictors and embedding
def predictors(cfg, detect=None, rec=None, det=None):
    """(rec, det): det only when `detect` (None: IndexProcess.use_det) — the main object is embedded.
    Predictors given are reused (tests, callers that already hold them)."""
    from ..infer.factory import det_predictor, rec_predictor

    rec = rec or rec_predictor(cfg)
    if detect is None:
        detect = bool((cfg.get("IndexProcess") or {}).get("use_det"))
    if not detect:
        return rec, None
    if det is None:
        det = det_predictor(cfg, max_det_results=1)
        if det is None:
            raise ConfigError("--detect (or IndexProcess.use_det) needs Global.det_inference_model_dir, "
                              "a mainbody detection model")
    return rec, det


def model_id(rec):
    """The fingerprint galleries record for `rec`'s vectors (hashed from the weights)."""
    try:
        from ..gallery.model_id import model_fingerprint
    except ImportError:  # pragma: no cover - older gallery package
        return rec.fingerprint
    return model_fingerprint(rec)


def embedder(cfg, rec, det=None):
    """The Embedder of `rec` (and `det`: the main object is embedded) with the config's image limits,
    batch size and decoding threads; files it cannot use are skipped (embed_files) or raise (embed_file)."""
    return Embedder.from_config(cfg, rec, det)


def load_image(cfg, path):
    """RGB uint8 of `path` under the config's limits; ImageReadError naming it when it cannot be used."""
    limits = image_options(cfg)
    return read_checked(path, limits["max_pixels"], limits["min_side"])


# ------------------------------------------------------------------ galleries (store interface only)
def backend(ip):
    return (ip.get("backend") or "faiss") if ip else "faiss"


def where(ip):
    """(store class, location, options) of the gallery IndexProcess names (base.gallery_location)."""
    from ..gallery.base import gallery_location

    if backend(ip) == "faiss" and not ip.get("index_dir"):
        raise ConfigError("IndexProcess.index_dir is required (or --index DIR)")
    return gallery_location(ip)


def location(ip):
    """Where the store keeps the gallery: index_dir (faiss), else the store's own location (milvus: uri)."""
    return os.fspath(where(ip)[1])


def gallery_exists(ip):
    from ..gallery.base import gallery_exists as exists

    return exists(ip)


def open_store(ip, rec=None, fingerprint=None):
    """The gallery IndexProcess names, checked against `rec`'s model when given."""
    if rec is not None:
        fingerprint = fingerprint or model_id(rec)
    return open_gallery(ip, model_fingerprint=fingerprint,
                        embedding_size=rec.embedding_size if rec is not None else None)


def create_store(ip, embedding_size, fingerprint, vectors=None, labels=None, paths=None, boxes=None,
                 overwrite=False):
    from ..gallery.base import create_gallery
    from ..gallery.builder import index_params

    kwargs = {}
    if vectors is not None and len(vectors):
        kwargs.update(vectors=vectors, labels=labels, paths=paths, boxes=boxes)
    return create_gallery(ip, int(embedding_size), model_fingerprint=fingerprint, overwrite=overwrite,
                          **kwargs, **index_params(ip))


def gallery_version(gallery):
    """The store's published state (FAISS: 'v000007'; Milvus: its revision token), None when it cannot tell."""
    return getattr(gallery, "version", None)


def gallery_vectors(gallery, records, cfg=None, rec=None, root=None):
    """float32 [n, D] vectors of `records` (rows of gallery.records()), and the mask of those found.

    The store answers them (`get_vectors`); a store without it gets its images embedded again from
    their paths (needs cfg, rec and root)."""
    ids = np.asarray([r["id"] for r in records], np.int64)
    try:
        return np.asarray(gallery.get_vectors(ids), np.float32), np.ones(len(ids), bool)
    except NotImplementedError:
        pass
    if rec is None or cfg is None:
        raise ConfigError("this gallery store cannot return its vectors; they must be re-embedded (give a model)")
    log.info("the gallery store returns no vectors: embedding its %d images again", len(records))
    paths = [resolve(r["path"], root) for r in records]
    emb = embedder(cfg, rec).embed_files(paths, desc="re-embedding gallery")
    out = np.zeros((len(ids), rec.embedding_size), np.float32)
    found = np.zeros(len(ids), bool)
    out[emb.index] = emb.vectors
    found[emb.index] = True
    return out, found


def resolve(path, root):
    """A gallery path as a file: absolute as it is, relative to `root` otherwise. A key of a file whose
    name is not UTF-8 (its bytes written `\\xNN`: utils/text.py) is the file of that name, unless a file
    is literally named so."""
    from ..utils.text import name_from_text

    if path is None:
        return None
    file = path if (os.path.isabs(path) or not root) else os.path.join(root, path)
    real = name_from_text(file)
    if real != file and not os.path.lexists(file) and os.path.lexists(real):
        return real
    return file


def file_relpath(key, file):
    """The relative path the gallery key `key` stands for, spelt as its file `file` (resolve's answer) is on
    disk: the same number of trailing components (a key of a name that is not UTF-8 has its bytes written
    `\\xNN`; a file moved or copied by its key would get another name)."""
    if not file:
        return key
    return os.path.join(*os.path.normpath(file).split(os.sep)[-len(key.split("/")):])


def image_root(ip, state=None):
    """Where a gallery's relative paths point: the indexed folder (index_folder's state), else
    IndexProcess.image_root."""
    if state is not None and state.root:
        return state.root
    return ip.get("image_root") if ip else None


# ------------------------------------------------------------------ tools
def setup_tool(cfg, index=None, detect=None):
    """What every library tool does after reading its config: logging, the image pixel limit, FAISS
    threads, and the --index / --detect options written into the config."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import faiss

    from ..utils.image import set_max_image_pixels

    g = cfg["Global"]
    set_max_image_pixels(g.get("max_image_pixels"))
    faiss.omp_set_num_threads(int(g.get("cpu_num_threads") or 1))
    if index is not None:
        cfg["IndexProcess"]["index_dir"] = os.fspath(index)
    if detect:
        cfg["IndexProcess"]["use_det"] = True
    return cfg
