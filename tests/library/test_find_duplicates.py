"""tools/find_duplicates.py: candidates by embedding, decisions by verification, the rule calibrated on
the folder (cached), two tiers, the review page's report, safe moving."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from library_helpers import cli
from ppshitu.errors import ConfigError
from ppshitu.library import photos
from ppshitu.library.duplicates import move_duplicates


@pytest.fixture(scope="module")
def originals():
    """Distinct photographs (scikit-image samples and crops of them that barely overlap), 256 px."""
    rng = np.random.default_rng(4)
    return photos.distinct_images(["coffee", "rocket", "chelsea", "astronaut"], 4, rng, size=256)


@pytest.fixture
def library(originals, tmp_path, monkeypatch):
    """A folder of the originals, plus in copies/: a byte copy, a re-encoded + resized copy, a 10 %
    crop and a brightened copy of coffee; and a look-alike (one region of it recoloured)."""
    monkeypatch.setenv("PPSHITU_DUPLICATES_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    for name, rgb in originals:
        (folder / name.split("_")[0]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / name.split("_")[0] / f"{name}.jpg", quality=92)
    src = folder / "coffee" / "coffee.jpg"
    (folder / "copies").mkdir()
    shutil.copyfile(src, folder / "copies" / "exact copy.jpg")
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im.resize((w // 2, h // 2)).save(folder / "copies" / "small.jpg", quality=40)
    im.crop((0, 0, int(w * 0.9), h)).save(folder / "copies" / "cropped.jpg", quality=90)
    Image.fromarray(np.clip(np.asarray(im, np.int16) + 40, 0, 255).astype(np.uint8)).save(
        folder / "copies" / "brighter.jpg", quality=90)
    variant = np.asarray(im).copy()
    variant[h // 4:h // 2, w // 4:w // 2] = variant[h // 4:h // 2, w // 4:w // 2, ::-1]   # a cup in another colour
    Image.fromarray(variant).save(folder / "copies" / "recoloured.jpg", quality=92)
    family = {"coffee/coffee.jpg", "copies/exact copy.jpg", "copies/small.jpg", "copies/cropped.jpg",
              "copies/brighter.jpg"}
    return folder, family


def _dup_groups(report):
    return [sorted(m["path"] for m in g["members"]) for g in report["groups"] if g["tier"] == "duplicate"]


def test_dir_mode_verifies_copies_keeps_a_lookalike_apart_and_writes_the_review_page(library, tmp_path, rec, capsys):
    import tools.find_duplicates as tool

    folder, family = library
    out = tmp_path / "report"
    report = tool.main(cli() + ["--dir", str(folder), "--out", str(out), "--default-rule"], rec=rec)
    assert sorted(family) in _dup_groups(report), _dup_groups(report)   # every edited copy, one group
    assert not any("copies/recoloured.jpg" in g for g in _dup_groups(report))   # the look-alike: not a duplicate
    fam = next(g for g in report["groups"] if g["tier"] == "duplicate" and "coffee/coffee.jpg" in
               [m["path"] for m in g["members"]])
    assert fam["keep"] in ("coffee/coffee.jpg", "copies/exact copy.jpg")   # highest resolution, then largest file
    by = {m["path"]: m for m in fam["members"]}
    assert by["copies/small.jpg"]["action"] == "move" and by[fam["keep"]]["action"] == "keep"
    assert by["copies/cropped.jpg"]["evidence_to_keep"]["inliers"] >= 12 and by["copies/small.jpg"]["width"] == 128
    sim = [g for g in report["groups"] if g["tier"] == "similar"]
    assert any("copies/recoloured.jpg" in [m["path"] for m in g["members"]] for g in sim)   # shown as similar ...
    assert all(m["action"] == "keep" for g in sim for m in g["members"])                   # ... kept by default
    assert "complete" in report["linkage"] and report["calibration"]["fallback"] == "--default-rule"
    data = json.loads((out / "duplicates.json").read_text())
    assert data["groups"] == report["groups"] and data["moves"] == []
    page = (out / "duplicates.html").read_text()
    assert "exact copy.jpg" in page and page.count("<img") == sum(len(g["members"]) for g in report["groups"])
    assert "Export decisions" in page and "suggested keeper" in page and "report-data" in page
    text = capsys.readouterr().out
    assert "group 1 (duplicate" in text and "duplicate rule:" in text
    for p in family:
        assert (folder / p).exists()                               # nothing moved without --move-to


def test_the_rule_is_calibrated_on_the_folder_and_cached(library, tmp_path, rec, capsys):
    import tools.find_duplicates as tool

    folder, family = library
    index = tmp_path / "index"
    report = tool.main(cli() + ["--dir", str(folder), "--index", str(index), "--out", str(tmp_path / "r1")], rec=rec)
    text = capsys.readouterr().out
    assert "calibration on this folder:" in text and "edited copies (in memory)" in text and "precision" in text
    cal = report["calibration"]
    assert cal["fallback"] is None and cal["measured"]["positives"] > 0 and cal["rule"]["source"].startswith(
        "calibrated on this folder")
    assert sorted(family) in _dup_groups(report)
    assert not any(p.name.startswith("cal") or p.suffix == ".json" for p in folder.rglob("*"))   # nothing written there
    again = tool.main(cli() + ["--index", str(index), "--out", str(tmp_path / "r2")], rec=rec)
    assert "calibration: cached for this folder and model" in capsys.readouterr().out
    assert again["rule"]["min_inliers"] == report["rule"]["min_inliers"]


def test_move_to_moves_duplicates_not_similar_images_and_updates_the_index(library, tmp_path, rec):
    import tools.find_duplicates as tool
    from ppshitu.gallery import Gallery

    folder, family = library
    index, moved = tmp_path / "index", tmp_path / "moved"
    with pytest.raises(ConfigError, match="inside the indexed folder"):
        tool.main(cli() + ["--dir", str(folder), "--index", str(index), "--move-to", str(folder / "dups"),
                           "--out", str(tmp_path / "r0"), "--default-rule"], rec=rec)
    report = tool.main(cli() + ["--dir", str(folder), "--index", str(index), "--move-to", str(moved),
                                "--keep", "first", "--out", str(tmp_path / "r1"), "--default-rule"], rec=rec)
    fam = next(g for g in report["groups"] if set(m["path"] for m in g["members"]) == family)
    assert fam["keep"] == "coffee/coffee.jpg"                      # --keep first: path order
    assert (folder / "coffee" / "coffee.jpg").exists() and (folder / "copies" / "recoloured.jpg").exists()
    for p in family - {"coffee/coffee.jpg"}:
        assert not (folder / p).exists() and (moved / p).exists()
    paths = {r["path"] for r in Gallery.open(str(index)).records()}
    assert not (family - {"coffee/coffee.jpg"}) & paths and "coffee/coffee.jpg" in paths   # re-synced


def test_never_moves_when_the_kept_copy_is_gone(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x"), b.write_bytes(b"x")
    st = os.stat(b)
    report = {"groups": [{"tier": "duplicate", "members": [
        {"keep": True, "file": str(tmp_path / "gone.jpg"), "path": "gone.jpg"},
        {"keep": False, "file": str(b), "path": "b.jpg", "size": st.st_size, "mtime_ns": st.st_mtime_ns}]}]}
    assert move_duplicates(report, tmp_path / "out") == [] and b.exists()
    report["groups"][0]["members"][0]["file"] = str(a)
    report["groups"][0]["members"][1]["size"] = 99                # changed since indexed: left alone
    assert move_duplicates(report, tmp_path / "out") == [] and b.exists()
    report["groups"][0]["members"][1]["size"] = st.st_size
    report["groups"][0]["tier"] = "similar"                       # a similar group: never moved this way
    assert move_duplicates(report, tmp_path / "out") == [] and b.exists()
    report["groups"][0]["tier"] = "duplicate"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.jpg").write_bytes(b"other")             # never overwritten
    moves = move_duplicates(report, tmp_path / "out")
    assert [os.path.basename(m["to"]) for m in moves] == ["b-2.jpg"] and a.exists() and not b.exists()


def test_threshold_apply_and_errors(library, tmp_path, rec, capsys):
    import tools.find_duplicates as tool

    folder, family = library
    with pytest.raises(ConfigError, match="--dir DIR"):
        tool.main(cli(tmp_path / "no_gallery") + ["--default-rule"], rec=rec)
    report = tool.main(cli() + ["--dir", str(folder), "--threshold", "0.9999", "--out", str(tmp_path / "r")],
                       rec=rec)                                    # the embedding alone: only the byte copy
    assert _dup_groups(report) == [["coffee/coffee.jpg", "copies/exact copy.jpg"]]
    assert "unverified" in report["rule"]["text"]
    with pytest.raises(ConfigError, match="--apply needs --move-to"):
        tool.main(["--apply", str(tmp_path / "d.json")])
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(Exception, match="not a ppshitu decisions file"):
        tool.main(["--apply", str(tmp_path / "d.json"), "--move-to", str(tmp_path / "m")])


def test_apply_moves_only_the_reports_own_folders_files(library, tmp_path, rec):
    """A decisions file (an editable JSON) naming a file outside the report's folder, or a member path that
    climbs out with '..', is refused as a whole: nothing moves."""
    import tools.find_duplicates as tool
    from ppshitu.library.duplicates import DecisionsError, apply_decisions, default_decisions, file_fingerprint

    folder, _ = library
    report = tool.main(cli() + ["--dir", str(folder), "--threshold", "0.9999", "--out", str(tmp_path / "r")],
                       rec=rec)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("keep.jpg", "secret.jpg"):
        shutil.copyfile(folder / "coffee" / "coffee.jpg", outside / name)
    forged = default_decisions(report)
    forged["groups"].append({"id": 99, "members": [
        {"file": str(outside / n), "path": n, "action": a, **file_fingerprint(str(outside / n))}
        for n, a in (("keep.jpg", "keep"), ("secret.jpg", "move"))]})
    with pytest.raises(DecisionsError, match="outside the report's folder"):
        apply_decisions(forged, str(tmp_path / "moved"))
    climbing = default_decisions(report)
    moved = next(m for g in climbing["groups"] for m in g["members"] if m["action"] == "move")
    moved["path"] = "../../../escaped/dup.jpg"
    with pytest.raises(DecisionsError, match="not a path inside the folder"):
        apply_decisions(climbing, str(tmp_path / "moved"))
    assert (outside / "secret.jpg").is_file() and not (tmp_path / "moved").exists()
    assert all(os.path.isfile(m["file"]) for g in report["groups"] for m in g["members"])
