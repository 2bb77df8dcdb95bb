"""The verified duplicate rule's pieces, without a model: verification (local features + RANSAC, then the
aligned content tile by tile), the calibration's rule choice and fallback, complete linkage, the
suggested keeper, EXIF orientation, and the decisions file (never deletes, never the last copy,
refused when a file changed)."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from ppshitu.library import dupcalibrate, photos, verify
from ppshitu.library.duplicates import (DecisionsError, Links, apply_decisions, check_decisions, complete_linkage,
                                        default_decisions, file_fingerprint, image_info, keeper_order)

RULE = dupcalibrate.DEFAULT_RULE


@pytest.fixture(scope="module")
def photo():
    return photos.distinct_images(["astronaut"], 1, np.random.default_rng(0), size=320)[0][1]


def _jpeg(rgb, q=90):
    return np.asarray(Image.open(io.BytesIO(photos.jpeg_bytes(rgb, q))).convert("RGB"))


def _ev(a, b):
    return verify.compare_pair(verify.prepare(_jpeg(a)), verify.prepare(_jpeg(b)))


def test_edited_copies_are_the_same_picture(photo):
    rng = np.random.default_rng(1)
    for kind in photos.EDITS:
        ev = _ev(photo, photos.edit(photo, kind, rng))
        assert RULE.duplicate(ev), (kind, ev)
        assert verify.verdict(ev, RULE) == "the same picture, edited"
    for kind in dupcalibrate.EDIT_RANGES:                     # the calibration's own edits, at their ranges
        ev = _ev(photo, dupcalibrate.calibration_edit(photo, kind, rng))
        assert ev.aligned and ev.overlap > 0.6, (kind, ev)


def test_a_local_change_is_not_the_same_picture(photo):
    """A recoloured region or a moved subject: the geometry agrees (the same object), one tile does not."""
    rng = np.random.default_rng(2)
    changed = photo.copy()
    h, w = photo.shape[:2]
    region = changed[h // 3:h // 3 + h // 6, w // 2:w // 2 + w // 6].astype(int)
    changed[h // 3:h // 3 + h // 6, w // 2:w // 2 + w // 6] = np.clip(region[..., ::-1] + 40, 0, 255)  # ~3 % area
    ev = _ev(photo, changed)
    assert ev.inliers >= 50 and ev.overlap > 0.95 and ev.global_ < 0.2   # globally almost the same ...
    assert ev.local > 0.2 and not RULE.duplicate(ev)                      # ... but one tile disagrees
    assert verify.verdict(ev, RULE) == "the same object"
    for _ in range(3):
        ev = _ev(photo, dupcalibrate.locally_changed(photo, rng))
        assert not RULE.duplicate(ev) and RULE.matched(ev), ev


def test_no_invisible_change_is_counted_as_a_negative():
    """Where no visible change can be drawn (a black frame: a hue turned or a part moved changes nothing),
    calibration gets no locally changed copy: an invisible change is the same picture."""
    assert dupcalibrate.locally_changed(np.zeros((96, 128, 3), np.uint8), np.random.default_rng(0)) is None


def test_pairs_below_the_candidate_floor_are_not_verified_on_demand():
    """Complete linkage asks about pairs that were no candidates; one below the floor is not linked, and
    no features are computed for it."""
    asked = []
    vectors = np.float32([[1, 0], [0.6, 0.8], [1, 0]])                # cosines 0.6 (0-1) and 1.0 (0-2)
    items = [{"id": i, "path": f"{i}.jpg"} for i in range(3)]
    links = Links(items, vectors, RULE, lambda i: asked.append(i), floor=0.8)
    assert links.kind(0, 1) is None and asked == []
    links.kind(0, 2)
    assert asked == [0, 2] and links.on_demand == 1                     # above the floor: verified


def test_crops_sharing_less_than_half_and_unrelated_images(photo):
    h, w = photo.shape[:2]
    left, right = photo[:, : int(w * 0.6)], photo[:, int(w * 0.4):]   # each shares 1/3 of its area
    ev = _ev(left, right)
    assert ev.inliers >= RULE.min_inliers and ev.overlap < 0.5 and not RULE.duplicate(ev)
    other = photos.distinct_images(["coffee"], 1, np.random.default_rng(0), size=320)[0][1]
    ev = _ev(photo, other)
    assert not RULE.duplicate(ev) and verify.verdict(ev, RULE) == "different"
    assert verify.verdict(ev, RULE, cosine=0.9, same_object=0.8, similar=0.7) == "the same object"  # embedding
    assert verify.verdict(ev, RULE, cosine=0.75, same_object=0.8, similar=0.7) == "similar"


def test_clipped_values_are_compared_one_sidedly(photo):
    bright = np.clip(photo.astype(int) + 90, 0, 255).astype(np.uint8)   # much of it clipped white
    assert RULE.duplicate(_ev(photo, bright))
    white = np.full((240, 320, 3), 250, np.uint8)                       # a white shirt ...
    white[::8] = 40
    yellow = white.copy()
    yellow[60:180, 80:240, 2] = 150                                     # ... turned yellow: still disagrees
    assert verify.content(verify.prepare(white), verify.prepare(yellow), np.eye(2, 3))["local"] > 0.3


def _evidence(n, inliers, local, glob=0.05, overlap=0.95):
    return [verify.Evidence(inliers=inliers, aligned="features", overlap=overlap, local=local, global_=glob)
            for _ in range(n)]


def test_choose_rule_reaches_the_target_at_the_best_recall():
    pos = _evidence(90, 100, 0.0) + _evidence(10, 100, 0.04)
    local = _evidence(50, 100, 0.5) + _evidence(10, 100, 0.05)          # local changes: caught above 0.04
    near = _evidence(30, 100, 0.0) + _evidence(20, 100, 0.6)            # the folder's duplicates + look-alikes
    rule, stats = dupcalibrate.choose_rule(pos, near, local, 0.95)
    assert rule.max_local == 0.04 and stats["recall"] == 1.0 and stats["precision"] >= 0.95
    assert stats["lookalikes_among_neighbour_pairs"] > 20               # counted where unambiguous
    rule, stats = dupcalibrate.choose_rule(_evidence(10, 100, 0.3), near, local, 0.95)
    assert rule is None or stats["recall"] < dupcalibrate.MIN_RECALL


def test_changes_the_verifier_cannot_see_do_not_sink_every_rule():
    """A drawn change too small to show on the comparison grid passes every rule: it says nothing about which
    to choose, and counted it pulled every rule below the target (the folder then fell back)."""
    pos = _evidence(100, 100, 0.0)
    local = _evidence(50, 100, 0.5) + _evidence(8, 100, 0.0)            # 8 changes the verifier did not see
    near = _evidence(30, 100, 0.0) + _evidence(20, 100, 0.6)
    rule, stats = dupcalibrate.choose_rule(pos, near, local, 0.95)
    assert rule is not None and stats["recall"] == 1.0 and stats["local_changes_unseen"] == 8


def test_calibration_sees_small_visible_changes_and_rejects_a_small_recoloured_patch():
    """A colour variant whose change fills part of one tile (a patch of 0.3 % of the picture) disagrees in
    under the 10 % cap of its worst tile, where calibration used to settle when its local changes started
    at 1 % of the area; drawn from 0.2 %, the folder's own changes set the allowance below it, while every
    edited copy still passes."""
    import cv2

    imgs = [im for _, im in photos.distinct_images(["astronaut", "coffee", "chelsea", "rocket"], 1,
                                                   np.random.default_rng(0), size=224)]
    prep = [verify.prepare(_jpeg(im)) for im in imgs]

    def ev(i, other):
        return verify.compare_pair(prep[i], verify.prepare(_jpeg(other)))
    rng = np.random.default_rng(3)
    pos = [ev(i, dupcalibrate.calibration_edit(im, k, rng)) for i, im in enumerate(imgs)
           for k in dupcalibrate.EDIT_RANGES for _ in range(2)]
    rng = np.random.default_rng(4)
    local = [ev(i, c) for i, im in enumerate(imgs) for _ in range(8)
             for c in [dupcalibrate.locally_changed(im, rng)] if c is not None]
    rule, stats = dupcalibrate.choose_rule(pos, [], local, 0.95)
    assert rule is not None and stats["recall"] >= 0.95
    photo = imgs[0]
    h, w = photo.shape[:2]
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + 60) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3 + 50, 0, 255)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (2 * w // 3, 2 * h // 3), 7, 1, -1)                   # 0.3 % of the area
    variant = photo.copy()
    variant[mask > 0] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[mask > 0]
    patch = ev(0, variant)
    assert patch.aligned and 0 < patch.local <= dupcalibrate.MAX_LOCAL      # the cap alone would let it through
    assert not rule.duplicate(patch), (rule, patch)
    rng = np.random.default_rng(1)
    for kind in photos.EDITS:
        assert rule.duplicate(ev(0, photos.edit(photo, kind, rng))), kind


def test_a_folder_too_small_to_calibrate_falls_back_and_says_so(tmp_path, monkeypatch):
    said = []
    items = [{"id": i, "path": f"{i}.jpg", "sha256": str(i)} for i in range(5)]
    cal = dupcalibrate.calibrate_folder(items, np.eye(5, dtype=np.float32), None, None, None, say=said.append)
    assert "too small" in cal["fallback"] and dupcalibrate.rule_of(cal)[0] == dupcalibrate.DEFAULT_RULE
    assert "documented default" in said[0]
    monkeypatch.setenv("PPSHITU_DUPLICATES_CACHE", str(tmp_path / "cache"))
    assert dupcalibrate.store(cal, str(tmp_path), "model", 0.95)
    assert dupcalibrate.cached(str(tmp_path), "model", 0.95, 5)["fallback"] == cal["fallback"]
    assert dupcalibrate.cached(str(tmp_path), "model", 0.95, 50) is None      # the folder grew: measured again
    assert dupcalibrate.cached(str(tmp_path), "other model", 0.95, 5) is None
    assert not any(p.name.endswith(".json") for p in tmp_path.iterdir())      # nothing in the folder itself


def test_complete_linkage_never_chains_through_a_weak_link():
    links = {(0, 1), (1, 2), (3, 4), (3, 5), (4, 5)}                   # 0~1~2 without 0~2; 3, 4, 5 all linked
    linked = lambda a, b: (min(a, b), max(a, b)) in links  # noqa: E731
    groups, _ = complete_linkage([[i] for i in range(6)], links, linked, lambda a, b: (a, b))
    groups = sorted(sorted(g) for g in groups)
    assert [3, 4, 5] in groups and not any({0, 2} <= set(g) for g in groups) and [0, 1] in groups


def test_the_suggested_keeper_resolution_then_size_then_exif():
    items = [{"path": "a.jpg", "width": 100, "height": 100, "size": 900, "exif_fields": 0},
             {"path": "b.jpg", "width": 200, "height": 100, "size": 100, "exif_fields": 0},
             {"path": "c.jpg", "width": 200, "height": 100, "size": 500, "exif_fields": 1},
             {"path": "d.jpg", "width": 200, "height": 100, "size": 500, "exif_fields": 9}]
    order = keeper_order(items, "best")
    assert [items[i]["path"] for i in sorted(range(4), key=order)] == ["d.jpg", "c.jpg", "b.jpg", "a.jpg"]


def test_image_info_respects_exif_orientation(tmp_path):
    from ppshitu.library.report import THUMB
    from ppshitu.utils.outputs import OutputGuard, write_thumbnail

    exif = Image.Exif()
    exif[0x0112] = 6                      # stored landscape, shown rotated: portrait
    exif[0x010F] = "camera maker"
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(path, "JPEG", exif=exif.tobytes())
    info = image_info(str(path))
    assert (info["width"], info["height"], info["orientation"]) == (200, 300, 6) and info["exif_fields"] >= 2
    with OutputGuard(tmp_path / "out") as guard:
        assert write_thumbnail(str(path), str(tmp_path / "out" / "t.jpg"), guard, THUMB)
    w, h = Image.open(tmp_path / "out" / "t.jpg").size
    assert h > w                          # the thumbnail as the photo is shown


def _report(tmp_path, names=("keep.jpg", "copy.jpg", "other.jpg")):
    files = []
    for n, name in enumerate(names):
        p = tmp_path / "photos" / name
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), (n * 60, 90, 90)).save(p, "JPEG")
        files.append({"path": name, "file": str(p), **file_fingerprint(str(p))})
    report = {"report_id": "r1", "folder": str(tmp_path / "photos"), "groups": [
        {"id": 1, "tier": "duplicate", "members": [{**files[0], "action": "keep"}, {**files[1], "action": "move"}]},
        {"id": 2, "tier": "similar", "members": [{**files[0], "action": "keep"}, {**files[2], "action": "keep"}]}]}
    return default_decisions(report)


def test_decisions_move_only_what_is_marked_and_never_the_last_copy(tmp_path):
    data = _report(tmp_path)
    moved = tmp_path / "moved"
    with pytest.raises(Exception, match="inside the indexed folder"):
        apply_decisions(data, tmp_path / "photos" / "sub")
    bad = json.loads(json.dumps(data))
    bad["groups"][0]["members"][0]["action"] = "move"                   # group 1 would keep nothing
    with pytest.raises(DecisionsError, match="last copy is never moved"):
        apply_decisions(bad, moved)
    bad = json.loads(json.dumps(data))
    bad["groups"][1]["members"][0]["action"] = "move"                   # keep.jpg kept in one group, moved in another
    with pytest.raises(DecisionsError, match="kept in one group and moved in another"):
        check_decisions(bad)
    moves = apply_decisions(data, moved)
    assert [os.path.basename(m["to"]) for m in moves] == ["copy.jpg"]
    assert (moved / "copy.jpg").is_file() and not (tmp_path / "photos" / "copy.jpg").exists()
    assert (tmp_path / "photos" / "keep.jpg").is_file() and (tmp_path / "photos" / "other.jpg").is_file()


def test_decisions_are_refused_when_a_file_changed_since_the_report(tmp_path):
    data = _report(tmp_path)
    photo = tmp_path / "photos" / "other.jpg"
    st = os.stat(photo)
    Image.new("RGB", (40, 30), (1, 2, 3)).save(photo, "JPEG")          # new content ...
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))                # ... under the old mtime
    with pytest.raises(DecisionsError, match=r"changed since the report.*other.jpg \(content changed\)"):
        apply_decisions(data, tmp_path / "moved")
    assert (tmp_path / "photos" / "copy.jpg").exists() and not (tmp_path / "moved").exists()   # nothing moved
    os.remove(photo)
    with pytest.raises(DecisionsError, match="gone"):
        apply_decisions(data, tmp_path / "moved")
