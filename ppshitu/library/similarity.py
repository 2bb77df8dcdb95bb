"""How alike two images are: the cosine of their embeddings and a calibrated verdict (tools/similarity.py).

The verdict's thresholds are measured, per model, by `python -m ppshitu.library.calibrate` and stored in
`ppshitu/library/calibration.json` under the model's fingerprint (the sha256 prefix of its weights),
each with the rule that chose it and what it gives on the measurement data:

    near-duplicate   cos >= near_duplicate   the same picture, edited (re-encoded, resized, cropped, ...);
                     also cos >= cosine_candidate with pHash distance <= phash_max_hamming
                     (near_duplicate_with_phash, the rule find_duplicates uses by default)
    same object      cos >= same_object      different pictures of one object / class
    similar          cos >= similar          more alike than most unrelated pairs
    different        below

A model without an entry gets the cosine and no verdict (run the calibration for it).
"""
import json
import os

from ..errors import ConfigError
from . import common

CALIBRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calibration.json")
FORMAT = "ppshitu-similarity-calibration-1"
LEVELS = (("near_duplicate", "near-duplicate"), ("same_object", "same object"), ("similar", "similar"))


def load_calibration(path=None):
    path = path or CALIBRATION
    if not os.path.isfile(path):
        return {"format": FORMAT, "models": {}}
    from ..utils.files import MAX_CONFIG_BYTES, read_input_text

    try:  # regular files only, at most MAX_CONFIG_BYTES (utils/files.py)
        data = json.loads(read_input_text(path, "similarity calibration", MAX_CONFIG_BYTES, ConfigError))
    except ConfigError:
        raise
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the similarity calibration ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{path}: not a ppshitu similarity calibration (format {FORMAT})")
    return data


def calibration_for(fingerprint, path=None):
    """The calibration entry of a model, or None."""
    return load_calibration(path)["models"].get(str(fingerprint))


def thresholds(entry):
    """{level: cosine}, levels ordered from the strictest; a looser level's threshold never exceeds
    a stricter one's (a near-duplicate is always at least 'same object')."""
    out = {key: float(entry["thresholds"][key]["cosine"]) for key, _ in LEVELS}
    # near-duplicate is stricter than same object, which is stricter than similar: keep that order
    # even where two measurements cross
    out["same_object"] = max(out["same_object"], out["similar"])
    out["near_duplicate"] = max(out["near_duplicate"], out["same_object"])
    return out


def verdict(cosine, entry, phash_distance=None):
    """('near-duplicate' | 'same object' | 'similar' | 'different', what decided). With the pHash
    distance of the two images, a near-duplicate is also what the calibrated embedding + pHash rule
    says it is (find_duplicates' default)."""
    if entry is None:
        return None, None
    t = thresholds(entry)
    hybrid = entry["thresholds"].get("near_duplicate_with_phash")
    levels = LEVELS
    if phash_distance is not None and hybrid:
        if cosine >= hybrid["cosine_alone"] or (cosine >= hybrid["cosine_candidate"]
                                                and phash_distance <= hybrid["phash_max_hamming"]):
            return "near-duplicate", ("near_duplicate_with_phash", hybrid["cosine_candidate"])
        levels = LEVELS[1:]  # the embedding + pHash rule has decided about near-duplicates
    for key, name in levels:
        if cosine >= t[key]:
            return name, (key, t[key])
    return "different", ("similar", t["similar"])


def near_duplicate_threshold(fingerprint, path=None):
    """The calibrated near-duplicate cosine of a model, or None."""
    entry = calibration_for(fingerprint, path)
    return None if entry is None else thresholds(entry)["near_duplicate"]


def near_duplicate_rule(fingerprint, path=None, use_phash=True):
    """The calibrated duplicate rule (a duplicates.NearRule) of a model: embedding + pHash when that was
    calibrated and `use_phash`, else the embedding's cosine alone; None without a calibration."""
    from .duplicates import NearRule

    entry = calibration_for(fingerprint, path)
    if entry is None:
        return None
    where = f"calibrated for model {fingerprint} ({os.path.basename(path or CALIBRATION)})"
    hybrid = entry["thresholds"].get("near_duplicate_with_phash")
    if use_phash and hybrid and _have_imagehash():
        return NearRule(float(hybrid["cosine_alone"]), float(hybrid["cosine_candidate"]),
                        int(hybrid["phash_max_hamming"]), where)
    return NearRule(thresholds(entry)["near_duplicate"], source=where)


def _have_imagehash():
    try:
        import imagehash  # noqa: F401
    except ImportError:
        return False
    return True


def compare(cfg, rec, a, b, det=None):
    """{cosine, phash_distance, a: {path, box}, b: {path, box}} for two image files (the pHash distance
    of the whole images, None without the ImageHash package or with a detector). Each image gets the checks
    a gallery image gets (ppshitu/embedder.py): one index_folder or the service refuses (too small, no detail)
    gets no verdict either."""
    embedder = common.embedder(cfg, rec, det)
    va, box_a, rgb_a = embedder.embed_file(a, gallery_checks=True)
    vb, box_b, rgb_b = embedder.embed_file(b, gallery_checks=True)
    distance = None
    if det is None and _have_imagehash():
        from PIL import Image

        from .duplicates import phash_image
        distance = int((phash_image(Image.fromarray(rgb_a)) != phash_image(Image.fromarray(rgb_b))).sum())
    return {"cosine": float(va @ vb), "phash_distance": distance,
            "a": {"path": str(a), "box": box_a}, "b": {"path": str(b), "box": box_b}}
