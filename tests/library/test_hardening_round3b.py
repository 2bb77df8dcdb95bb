"""Hardening round 3, second probe round (issue 23): the photo-library tools.

1. ppshitu's own outputs (a duplicates report and its thumbnails, drawings, galleries) are never indexed as
   photos, and a report folder inside --dir is refused.
"""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ppshitu.cli import run_main
from ppshitu.errors import ConfigError, PPShiTuError
from ppshitu.library.folder import sync_folder

from library_helpers import cli, make_cfg


def _sync(folder, index, rec, **kw):
    return sync_folder(make_cfg(index), folder, rec=rec, **kw)


# ------------------------------------------------------------------ 1. ppshitu's own outputs are not photos
def test_own_output_folders_are_never_indexed(folder, tmp_path, rec):
    from ppshitu.utils.outputs import OutputGuard

    src = folder / "class_0001" / "000.jpg"
    with OutputGuard(folder / "report", "--out") as guard:      # a duplicates report (thumbnails) in the folder
        guard.write_bytes(folder / "report" / "thumbs" / "000001.jpg", src.read_bytes())
    with OutputGuard(folder, "Global.output_dir") as guard:     # drawings written into the folder itself
        guard.write_bytes(folder / "class_0002" / "drawn.jpg", src.read_bytes())
    _sync(folder / "class_0003", tmp_path / "other", rec)        # another gallery inside the folder
    shutil.move(str(tmp_path / "other"), str(folder / "other_index"))
    r = _sync(folder, tmp_path / "index", rec)
    assert r.count == 24 and not [p for p in r.added if "report" in p or "drawn" in p or "other_index" in p]
    skipped = dict(r.skipped)
    assert "report" in skipped and "output folder" in skipped["report"]
    assert "written by ppshitu" in skipped["class_0002/drawn.jpg"] and "ppshitu index" in skipped["other_index"]


def test_a_report_folder_inside_dir_is_refused(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as dups

    for out in (folder / "report", folder):
        with pytest.raises(SystemExit) as e:
            run_main(lambda: dups.main(cli() + ["--dir", str(folder), "--threshold", "0.99", "--out", str(out)],
                                       rec=rec))
        assert e.value.code == 2 and "inside the indexed folder" in capsys.readouterr().err
    assert not (folder / "report").exists()
