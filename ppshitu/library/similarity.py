"""How alike two images are: the cosine of their embeddings and a calibrated verdict (tools/similarity.py).

tools/similarity.py answers with find_duplicates' verified rule (`verified_verdict`: local features +
RANSAC, then the aligned content; ppshitu/library/verify.py): "the same picture, edited" / "the same
object" / "similar" / "different", with the inlier count beside the cosine. The cosine levels below
(`verdict`, the earlier embedding-only verdict) still name "the same object" and "similar" for pairs
verification cannot align.

The verdict's thresholds are measured, per model, by `python -m ppshitu.library.calibrate` and stored in
`ppshitu/library/calibration.json` under the model's fingerprint (the sha256 prefix of its weights),
each with the rule that chose it and what it gives on the measurement data:

    near-duplicate   cos >= near_duplicate   the same picture, edited (re-encoded, resized, cropped, ...);
                     also cos >= cosine_candidate with pHash distance <= phash_max_hamming
                     (near_duplicate_with_phash, find_duplicates' rule before it verified pairs)
    same object      cos >= same_object      different pictures of one object / class
    similar          cos >= similar          more alike than most unrelated pairs
    different        below

A model without an entry gets the cosine and no verdict (run the calibration for it).
"""
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
    from ..utils.files import read_input_json

    data = read_input_json(path, "similarity calibration", error=ConfigError,
                           invalid="{path}: cannot read the similarity calibration ({e})")
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
    from .verify import compare_pair, prepare

    evidence = compare_pair(prepare(rgb_a), prepare(rgb_b))   # the whole images, as find_duplicates verifies
    from .folder import sha256_file  # find_duplicates' content hash: the same sha256 is "identical files"

    return {"cosine": float(va @ vb), "phash_distance": distance, "evidence": evidence.as_dict(),
            "a": {"path": str(a), "box": box_a, "sha256": sha256_file(a)},
            "b": {"path": str(b), "box": box_b, "sha256": sha256_file(b)}}


IDENTICAL_FILES = "identical files"  # find_duplicates' exact duplicates (the same sha256; its report's wording)


def identical_files(out):
    """True when compare()'s two files have the same content (sha256), as find_duplicates' exact pairs."""
    a, b = out["a"].get("sha256"), out["b"].get("sha256")
    return bool(a) and a == b


def verified_verdict(out, rule, entry=None):
    """The verdict of a compare() result under find_duplicates' verified rule (verify.Rule): 'identical files'
    (the same sha256, find_duplicates' exact duplicates), else 'the same
    picture, edited' / 'the same object' (the geometry agrees, the content or the overlap does not; or
    the embedding says so) / 'similar' / 'different'; the embedding's levels are the model's
    calibrated cosines (`entry`: its calibration.json entry, None: verification alone)."""
    from .verify import Evidence, verdict as rule_verdict

    if identical_files(out):  # byte-identical (the same file twice, or a copy): not "edited"
        return IDENTICAL_FILES
    e = out["evidence"]
    ev = Evidence(matches=e["matches"], inliers=e["inliers"], aligned=e["aligned"], ecc=e["ecc"] or 0.0,
                  scale=e["scale"] or 0.0, overlap=e["overlap"] or 0.0,
                  local=1.0 if e["local"] is None else e["local"],
                  residual=float("inf") if e["residual"] is None else e["residual"],
                  global_=float("inf") if e["global"] is None else e["global"])
    t = thresholds(entry) if entry else {}
    return rule_verdict(ev, rule, out["cosine"], t.get("same_object"), t.get("similar"))
