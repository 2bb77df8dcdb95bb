"""tools/search.py (nearest images + contact sheet) and tools/similarity.py (cosine + calibrated verdict)."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from library_helpers import cli, make_cfg
from ppshitu.library import calibrate, similarity
from ppshitu.library.folder import sync_folder


@pytest.fixture(scope="module")
def indexed(class_set, tmp_path_factory, rec):
    index = tmp_path_factory.mktemp("search") / "index"
    sync_folder(make_cfg(index), class_set, rec=rec)
    return index


def test_search_finds_the_image_itself_and_writes_a_sheet(indexed, class_set, tmp_path, rec, capsys):
    import tools.search as tool

    query = class_set / "class_0004" / "002.jpg"
    sheet = tmp_path / "sheet.jpg"
    hits = tool.main(cli(indexed) + ["--image", str(query), "--k", "5", "--out", str(sheet)], rec=rec)
    assert len(hits) == 5 and hits[0]["path"] == "class_0004/002.jpg" and hits[0]["score"] > 0.999
    assert hits[0]["file"] == os.path.join(os.path.realpath(class_set), "class_0004/002.jpg")
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5] and all(np.diff([h["score"] for h in hits]) <= 1e-6)
    out = capsys.readouterr().out
    assert "class_0004" in out.splitlines()[0] and f"contact sheet: {sheet}" in out
    im = Image.open(sheet)
    assert im.size[0] > 5 * 160 and im.size[1] > 160   # query + 5 results in one row of tiles
    hits = tool.main(cli(indexed) + ["--image", str(query), "--k", "3", "--json", "--no-sheet"], rec=rec)
    data = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in data["results"]] == [h["path"] for h in hits] and data["sheet"] is None


def test_search_with_the_detector_and_a_moved_file(indexed, class_set, tmp_path, rec, det, capsys):
    import tools.search as tool
    from ppshitu.library.search import hits_sheet

    hits = tool.main(cli(indexed) + ["--image", str(class_set / "class_0001" / "000.jpg"), "--k", "2",
                                      "--detect", "--out", str(tmp_path / "d.jpg")], rec=rec, det=det)
    assert len(hits) == 2 and os.path.isfile(tmp_path / "d.jpg")
    gone = dict(hits[0], file=str(tmp_path / "missing.jpg"))
    sheet = hits_sheet(make_cfg(), np.zeros((40, 60, 3), np.uint8) + 90, [gone])   # a grey "missing" tile
    assert sheet.ndim == 3 and sheet.shape[2] == 3


def test_search_refuses_a_bad_query(indexed, tmp_path, rec):
    import tools.search as tool
    from ppshitu.utils.image import ImageReadError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageReadError):
        tool.main(cli(indexed) + ["--image", str(bad)], rec=rec)


def _jpeg(src, dst, quality):
    Image.open(src).convert("RGB").save(dst, "JPEG", quality=quality)
    return dst


def test_similarity_verdicts(class_set, tmp_path, rec, capsys):
    """tools/similarity.py answers with find_duplicates' verified rule, the inlier count beside the cosine."""
    import tools.similarity as tool

    a = class_set / "class_0002" / "000.jpg"
    same = tool.main(cli() + [str(a), str(a)], rec=rec)
    # the same file twice is find_duplicates' exact pair: "identical files", not "edited"
    assert same["cosine"] > 0.999 and same["verdict"] == "identical files" and same["phash_distance"] == 0
    text = capsys.readouterr().out
    assert "verdict: identical files" in text and f"inliers: {same['evidence']['inliers']}" in text
    q40 = _jpeg(a, tmp_path / "q40.jpg", 40)
    copy = tool.main(cli() + [str(a), str(q40)], rec=rec)
    assert copy["cosine"] > 0.9 and copy["verdict"] == "the same picture, edited" and copy["evidence"]["aligned"]
    capsys.readouterr()
    other = tool.main(cli() + [str(a), str(class_set / "class_0005" / "001.jpg"), "--json"], rec=rec)
    assert other["cosine"] < copy["cosine"] and other["verdict"] in ("different", "similar")
    assert json.loads(capsys.readouterr().out)["verdict"] == other["verdict"]
    empty = tmp_path / "none.json"
    out = tool.main(cli() + [str(a), str(q40), "--calibration", str(empty), "--folder", str(tmp_path)], rec=rec)
    text = capsys.readouterr().out
    assert out["verdict"] == "the same picture, edited" and "no cosine levels for model" in text   # verified anyway
    assert "no calibration cached for --folder" in text and out["rule"]["min_inliers"] == 12     # the default rule


def test_shipped_calibration_is_for_the_demo_model_and_ordered(rec):
    from ppshitu.library.common import model_id

    entry = similarity.calibration_for(model_id(rec))
    assert entry is not None, "ppshitu/library/calibration.json has no entry for models/demo/rec"
    t = similarity.thresholds(entry)
    assert 0 < t["similar"] <= t["same_object"] <= t["near_duplicate"] < 1
    for key in ("near_duplicate", "same_object", "similar", "near_duplicate_with_phash"):
        assert entry["thresholds"][key]["rule"]            # each says how it was chosen
    assert entry["measured_on"]["unseen_classes"]["same_class_pairs"] > 100


def test_verdict_levels():
    entry = {"thresholds": {"near_duplicate": {"cosine": 0.95}, "same_object": {"cosine": 0.8},
                            "similar": {"cosine": 0.7},
                            "near_duplicate_with_phash": {"cosine_alone": 0.97, "cosine_candidate": 0.6,
                                                          "phash_max_hamming": 10}}}
    v = lambda c, d=None: similarity.verdict(c, entry, d)[0]  # noqa: E731
    assert [v(0.96), v(0.85), v(0.75), v(0.5)] == ["near-duplicate", "same object", "similar", "different"]
    assert v(0.65, 4) == "near-duplicate" and v(0.96, 30) == "same object" and v(0.98, 30) == "near-duplicate"
    crossed = {"thresholds": dict(entry["thresholds"], same_object={"cosine": 0.99})}
    t = similarity.thresholds(crossed)
    assert t["near_duplicate"] >= t["same_object"] == 0.99   # measurements that cross keep the order
    assert similarity.verdict(0.5, None) == (None, None)


def test_threshold_rules():
    neg = np.linspace(0, 1, 1001)
    t = calibrate.fpr_threshold(neg, 0.01)
    assert np.mean(neg >= t) <= 0.01 and np.mean(neg >= t - 0.002) > 0.01
    pos = np.linspace(0.5, 1.0, 100)
    t, err = calibrate.eer_threshold(pos, np.linspace(0.0, 0.6, 100))
    assert 0.5 <= t <= 0.6 and err < 0.2
    scores = np.array([0.99, 0.98, 0.97, 0.5, 0.4, 0.96])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    th, f1, p, r = calibrate.best_f1_threshold(scores, y)
    assert th == pytest.approx(0.97) and f1 == 1.0
    ham = np.array([2, 30, 3, 4, 40, 40])
    cos = np.array([0.99, 0.99, 0.7, 0.4, 0.3, 0.5])
    alone, cand, h, f1, p, r = calibrate.best_hybrid(cos, ham, np.array([1, 1, 1, 0, 0, 0], bool))
    assert f1 == 1.0 and cand > 0.4 and h >= 3


def test_calibration_file_round_trip(tmp_path):
    path = str(tmp_path / "cal.json")
    calibrate.save("abc", {"thresholds": {"near_duplicate": {"cosine": 0.9}, "same_object": {"cosine": 0.8},
                                          "similar": {"cosine": 0.7}}}, path)
    assert similarity.near_duplicate_threshold("abc", path) == 0.9
    assert similarity.calibration_for("x", path) is None
    (tmp_path / "bad.json").write_text("{}")
    from ppshitu.errors import ConfigError
    with pytest.raises(ConfigError):
        similarity.load_calibration(str(tmp_path / "bad.json"))


def test_contact_sheet_layout():
    from ppshitu.library.sheet import contact_sheet

    q = np.full((50, 80, 3), 200, np.uint8)
    sheet = contact_sheet(q, [(q, ["a 0.9", "x.jpg"], "a"), (None, ["missing"], None)], tile=64, columns=2,
                          title="t")
    assert sheet.shape[1] == 2 * 72 + 4 and sheet.shape[0] > 2 * 64   # 3 tiles in 2 columns: 2 rows
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, "PNG")
