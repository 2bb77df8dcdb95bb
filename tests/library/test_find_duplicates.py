"""tools/find_duplicates.py: exact (sha256) and near (gallery k-NN) duplicates, report, safe moving."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from library_helpers import cli
from ppshitu.errors import ConfigError
from ppshitu.library.duplicates import NearRule, UnionFind, exact_pairs, group_items, move_duplicates, near_pairs


def _library(folder):
    """The class folders plus: a byte copy, a low-quality re-encode + resize, a 10 % crop, in other folders."""
    (folder / "copies").mkdir()
    src = folder / "class_0003" / "001.jpg"
    shutil.copyfile(src, folder / "copies" / "exact copy.jpg")
    im = Image.open(src).convert("RGB")
    im.resize((48, 48)).save(folder / "copies" / "small.jpg", "JPEG", quality=25)
    w, h = im.size
    im.crop((0, 0, int(w * 0.9), h)).save(folder / "copies" / "cropped.jpg", "JPEG", quality=90)
    return {"class_0003/001.jpg", "copies/exact copy.jpg", "copies/small.jpg", "copies/cropped.jpg"}


def _groups(report):
    return [sorted(m["path"] for m in g["members"]) for g in report["groups"]]


def test_dir_mode_groups_copies_and_writes_the_report(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as tool

    family = _library(folder)
    out = tmp_path / "report"
    report = tool.main(cli() + ["--dir", str(folder), "--out", str(out)], rec=rec)
    groups = _groups(report)
    assert sorted(family) in groups, groups                          # the exact copy and both edits, one group
    assert all(len({p.split("/")[0] for p in g} - {"copies"}) <= 1 for g in groups)   # no two classes merged
    fam = next(g for g in report["groups"] if sorted(m["path"] for m in g["members"]) == sorted(family))
    assert fam["kind"] == "near" and fam["keep"] in ("class_0003/001.jpg", "copies/exact copy.jpg")
    by = {m["path"]: m for m in fam["members"]}
    assert by["copies/exact copy.jpg"]["same_bytes_as_keep"] or by["class_0003/001.jpg"]["same_bytes_as_keep"]
    assert sum(m["keep"] for m in fam["members"]) == 1
    assert report["rule"]["candidate"] is not None             # the calibrated embedding + pHash rule
    data = json.loads((out / "duplicates.json").read_text())
    assert data["groups"] == report["groups"] and data["moves"] == []
    page = (out / "duplicates.html").read_text()
    assert "exact copy.jpg" in page and page.count("<img") == sum(len(g) for g in groups)
    assert len(os.listdir(out / "thumbs")) == sum(len(g) for g in groups)
    assert "keep " in capsys.readouterr().out
    for p in family:
        assert (folder / p).exists()                               # nothing moved without --move-to


def test_move_to_keeps_one_copy_per_group_and_updates_the_index(folder, tmp_path, rec):
    import tools.find_duplicates as tool
    from ppshitu.gallery import Gallery

    family = _library(folder)
    index, moved = tmp_path / "index", tmp_path / "moved"
    with pytest.raises(ConfigError, match="inside the indexed folder"):
        tool.main(cli() + ["--dir", str(folder), "--index", str(index), "--move-to", str(folder / "dups"),
                           "--out", str(tmp_path / "r0")], rec=rec)
    report = tool.main(cli() + ["--dir", str(folder), "--index", str(index), "--move-to", str(moved),
                                "--keep", "first", "--out", str(tmp_path / "r1")], rec=rec)
    fam = next(g for g in report["groups"] if set(m["path"] for m in g["members"]) == family)
    assert fam["keep"] == "class_0003/001.jpg"                     # --keep first: path order
    assert (folder / "class_0003" / "001.jpg").exists()
    for p in family - {"class_0003/001.jpg"}:
        assert not (folder / p).exists() and (moved / p).exists()
    moves = json.loads((tmp_path / "r1" / "duplicates.json").read_text())["moves"]
    assert {os.path.relpath(m["to"], moved) for m in moves} >= family - {"class_0003/001.jpg"}
    paths = {r["path"] for r in Gallery.open(str(index)).records()}
    assert not (family - {"class_0003/001.jpg"}) & paths and "class_0003/001.jpg" in paths   # re-synced
    again = tool.main(cli() + ["--index", str(index), "--out", str(tmp_path / "r2")], rec=rec)   # index alone
    assert not any(set(g) & family for g in _groups(again))


def test_never_moves_when_the_kept_copy_is_gone(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x"), b.write_bytes(b"x")
    st = os.stat(b)
    report = {"groups": [{"members": [{"keep": True, "file": str(tmp_path / "gone.jpg"), "path": "gone.jpg"},
                                      {"keep": False, "file": str(b), "path": "b.jpg", "size": st.st_size,
                                       "mtime_ns": st.st_mtime_ns}]}]}
    assert move_duplicates(report, tmp_path / "out") == [] and b.exists()
    report["groups"][0]["members"][0]["file"] = str(a)
    report["groups"][0]["members"][1]["size"] = 99                # changed since indexed: left alone
    assert move_duplicates(report, tmp_path / "out") == [] and b.exists()
    report["groups"][0]["members"][1]["size"] = st.st_size
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.jpg").write_bytes(b"other")             # never overwritten
    moves = move_duplicates(report, tmp_path / "out")
    assert [os.path.basename(m["to"]) for m in moves] == ["b-2.jpg"] and a.exists() and not b.exists()


def test_threshold_and_calibration_errors(folder, tmp_path, rec):
    import tools.find_duplicates as tool

    with pytest.raises(ConfigError, match="--dir DIR"):
        tool.main(cli(tmp_path / "no_gallery"), rec=rec)
    with pytest.raises(ConfigError, match="no calibrated"):
        tool.main(cli() + ["--dir", str(folder), "--calibration", str(tmp_path / "none.json")], rec=rec)
    report = tool.main(cli() + ["--dir", str(folder), "--threshold", "0.9999", "--out", str(tmp_path / "r")],
                       rec=rec)
    assert report["groups"] == [] and report["rule"]["candidate"] is None


class FakeGallery:
    """Exact k-NN over given vectors, answering like GalleryStore.search."""
    higher_is_better = True

    def __init__(self, vectors):
        self.v = np.asarray(vectors, np.float32)
        self.calls = 0

    def search(self, q, k):
        self.calls += 1
        s = q @ self.v.T
        order = np.argsort(-s, axis=1)[:, :k]
        return None, np.take_along_axis(s, order, 1), order.astype(np.int64)


def test_near_pairs_use_k_nearest_only_and_union_find_chains():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    v = np.concatenate([base + 0.01 * rng.normal(size=(3, 16)) for _ in range(4)])   # 3 families of 4
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    g = FakeGallery(v)
    pairs = near_pairs(g, v, list(range(12)), NearRule(0.99), k=1)
    assert all(i % 3 == j % 3 for i, j in pairs)                   # only within families
    uf = UnionFind(12)
    for i, j in pairs:
        uf.union(i, j)
    assert len(near_pairs(g, v, list(range(12)), 0.99, k=3)) == 18   # k=3: every pair of each family
    items = [{"id": i, "path": f"{i:02d}.jpg", "size": i, "sha256": "same" if i in (0, 3) else str(i)}
             for i in range(12)]
    groups = group_items(items, v, near_pairs(g, v, list(range(12)), 0.99, k=3), exact_pairs(
        [it["sha256"] for it in items]), keep="largest")
    assert sorted(len(gr["members"]) for gr in groups) == [4, 4, 4]
    assert all(gr["keep"] == max((m for m in gr["members"]), key=lambda m: m["size"])["path"] for gr in groups)
    with pytest.raises(ConfigError):
        group_items(items, v, {}, [], keep="best")
