"""Which model made a gallery's vectors: the sha256 of the weights file the predictor runs.

A gallery records this fingerprint and refuses vectors from any other model. It is hashed from
`inference.pdiparams` itself, not copied from `inference.yml`: new weights exported (or copied)
under an old `inference.yml` are a different model, and their vectors must not be mixed with the
old ones. Hashing costs little next to loading the model (~10 ms per 10 MB). An imported ONNX model
(tools/import_model.py) is hashed from its inference.onnx; a text-image model's fingerprint adds its text
encoder's hash ("IMAGE+text:TEXT"), so a gallery answers text queries only from the text encoder that belongs
to the image encoder that made its vectors. Vectors averaged with the mirror image's (RecPreProcess.flip_average)
add "+flip": a gallery built with flip averaging refuses queries embedded without it, and the other way round.
"""
import logging
import os

log = logging.getLogger("ppshitu.gallery")
_cache = {}  # (params path, size, mtime_ns) -> fingerprint


def weights_fingerprint(params_path):
    from ..infer.spec import fingerprint

    st = os.stat(params_path)
    key = (os.path.abspath(params_path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        _cache[key] = fingerprint(params_path)
    return _cache[key]


def model_fingerprint(rec):
    """The fingerprint of the weights `rec` (a RecPredictor) runs; a stand-in without a
    `model_dir` answers its own `fingerprint`. Warns when inference.yml records another one.
    An imported text-image model (inference.yml's `text` section) answers IMAGE+text:TEXT, the hashes of both
    encoders' files: its gallery then says which text encoder may query it (text_fingerprint)."""
    model_dir = getattr(rec, "model_dir", None)
    flip = FLIP_MARK if getattr(rec, "flip_average", False) else ""
    if model_dir is None:
        return rec.fingerprint + flip
    from ..infer.runtime import model_files

    actual = weights_fingerprint(model_files(model_dir)[1])
    spec = getattr(rec, "spec", None) or {}
    recorded = spec.get("fingerprint")
    if recorded is not None and recorded != actual:
        log.warning("%s: inference.yml records fingerprint %s but inference.pdiparams hashes to %s (the weights "
                    "changed after export); the gallery uses the weights' %s", model_dir, recorded, actual, actual)
    actual += flip  # before the text part: text_fingerprint reads what follows TEXT_MARK
    text = spec.get("text")
    if isinstance(text, dict) and text.get("onnx_model"):
        actual += TEXT_MARK + weights_fingerprint(os.path.join(model_dir, str(text["onnx_model"])))
    return actual


TEXT_MARK = "+text:"
FLIP_MARK = "+flip"  # the vectors average each image with its mirror image (RecPreProcess.flip_average)


def text_fingerprint(fingerprint):
    """The text encoder's part of a gallery's model fingerprint, or None (a model without one)."""
    fingerprint = str(fingerprint or "")
    return fingerprint.split(TEXT_MARK, 1)[1] if TEXT_MARK in fingerprint else None


def check_text_queries(gallery_fingerprint, model_fingerprint, where):
    """Refuse (GalleryError naming `where`) a text query to a gallery whose vectors another image encoder made, or
    one the model has no text encoder for: a text vector is only comparable with its own model's image vectors."""
    from .errors import GalleryError

    mine = text_fingerprint(model_fingerprint)
    if mine is None:
        raise GalleryError(f"{where}: the model ({model_fingerprint}) has no text encoder, so this gallery cannot "
                           f"be searched by text; index the folder with a text-image model imported by "
                           f"tools/import_model.py --text-encoder, and search with that model")
    if gallery_fingerprint is None or gallery_fingerprint == model_fingerprint:
        return
    if text_fingerprint(gallery_fingerprint) is None:
        raise GalleryError(f"{where}: this gallery was indexed with model {gallery_fingerprint}, which has no text "
                           f"encoder; it cannot answer text queries (index the folder again with the text-image "
                           f"model {model_fingerprint} to search it by text)")
    raise GalleryError(f"{where}: this gallery was indexed with the text-image model {gallery_fingerprint}, not "
                       f"{model_fingerprint}; text vectors of one model are not comparable with another's image "
                       f"vectors: search with the model that indexed it")
