"""The library tools on a Milvus Lite gallery: the same sync, search and duplicate finding through the
GalleryStore interface only (the folder state lives beside the .db file)."""
import os
import shutil

import pytest


from library_helpers import cli, make_cfg  # noqa: E402
from ppshitu.library.folder import sync_folder  # noqa: E402


def test_sync_search_and_duplicates_on_milvus(folder, tmp_path, rec):
    import tools.find_duplicates as dups
    import tools.search as search

    db = tmp_path / "lib.db"
    milvus = {"IndexProcess.backend": "milvus", "IndexProcess.uri": str(db), "IndexProcess.collection": "photos"}
    cfg = make_cfg(None, **milvus)
    r = sync_folder(cfg, folder, rec=rec)
    assert len(r.added) == 24 and r.count == 24
    assert os.path.isfile(f"{db}.photos.folder_state.sqlite")
    assert sync_folder(make_cfg(None, **milvus), folder, rec=rec).unchanged == 24
    os.remove(folder / "class_0002" / "003.jpg")
    shutil.copyfile(folder / "class_0001" / "000.jpg", folder / "class_0004" / "copy.jpg")
    r = sync_folder(make_cfg(None, **milvus), folder, rec=rec)
    assert r.added == ["class_0004/copy.jpg"] and r.removed == ["class_0002/003.jpg"] and r.count == 24

    hits = search.main(cli(None, **milvus) + ["--image", str(folder / "class_0001" / "000.jpg"), "--k", "2",
                                               "--no-sheet"], rec=rec)
    assert {h["path"] for h in hits} == {"class_0001/000.jpg", "class_0004/copy.jpg"} and hits[0]["score"] > 0.999
    report = dups.main(cli(None, **milvus) + ["--out", str(tmp_path / "r")], rec=rec)   # the config's gallery
    groups = [sorted(m["path"] for m in g["members"]) for g in report["groups"]]
    assert ["class_0001/000.jpg", "class_0004/copy.jpg"] in groups
    assert next(g for g in report["groups"] if len(g["members"]) == 2 and "class_0004/copy.jpg" in
                [m["path"] for m in g["members"]])["kind"] == "exact"
