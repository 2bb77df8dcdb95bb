"""Round 4 of the hardening probes, the photo library:

1. A service whose --upload-dir is the user's photo folder (or inside it) stores its uploads there
   (gallery-<16 hex>/<2 hex>/<sha256>.jpg); the next `index_folder --dir` of that folder indexed them as
   photos, labelled 'gallery-83088cac0cb9a82b/0f'. Folder scans now skip the service's upload folders (a
   gallery's subfolder holding its GALLERY file; a Milvus Lite gallery's X.db.uploads beside X.db).
"""
import os


def _touch(path, data=b"\xff\xd8\xff photo"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_a_folder_scan_skips_the_services_uploads(tmp_path):
    from ppshitu.library.folder import scan

    root = tmp_path / "photos"
    _touch(root / "cats" / "a.jpg")
    sha = "ab" + "1" * 62
    _touch(root / "gallery-0123456789abcdef" / "ab" / f"{sha}.jpg")
    _touch(root / "gallery-0123456789abcdef" / "GALLERY", b'["faiss", "/g", null]\n')
    _touch(root / "lib.db", b"milvus lite")
    _touch(root / "lib.db.uploads" / "shop" / "ab" / f"{sha}.jpg")
    # look-alikes that are the user's: a folder so named without the GALLERY file, .uploads without its file
    _touch(root / "gallery-fedcba9876543210" / "b.jpg")
    _touch(root / "trip.uploads" / "c.jpg")
    skipped = {}
    found, errors = scan(root, skipped=skipped)
    assert sorted(found) == ["cats/a.jpg", "gallery-fedcba9876543210/b.jpg", "trip.uploads/c.jpg"], found
    assert "GALLERY" in skipped["gallery-0123456789abcdef"] and "lib.db" in skipped["lib.db.uploads"]


def test_the_uploads_owner_file_is_the_services():
    from ppshitu.library.folder import UPLOADS_OWNER_FILE
    from ppshitu.serving.service import GALLERY_FILE

    assert UPLOADS_OWNER_FILE == GALLERY_FILE


def test_the_services_subfolder_is_what_the_scan_skips(tmp_path):
    import re

    from ppshitu.serving.service import service_upload_dir

    folder, owner = service_upload_dir(str(tmp_path), {"backend": "faiss", "index_dir": str(tmp_path / "g")})
    assert re.fullmatch(r"gallery-[0-9a-f]{16}", os.path.basename(folder)) and owner


def test_a_folder_holding_ppshitus_outputs_still_has_its_photos_indexed(tmp_path):
    """predict_system -o Global.output_dir=photos/dogs drew into the user's dogs folder (new names only); the
    next scan of photos skipped the whole dogs folder as "ppshitu's output folder": the user's dog photos
    were never indexed. Now only the recorded drawings are skipped."""
    from ppshitu.library.folder import scan
    from ppshitu.utils.outputs import OutputGuard

    root = tmp_path / "photos"
    _touch(root / "dogs" / "000.jpg")
    with OutputGuard(root / "dogs", "Global.output_dir") as guard:
        guard.write_bytes(root / "dogs" / "cats" / "000.jpg", b"\xff\xd8\xff drawing")
    skipped = {}
    found, _ = scan(root, skipped=skipped)
    assert sorted(found) == ["dogs/000.jpg"], found
    assert "written by ppshitu" in skipped["dogs/cats/000.jpg"]


def test_a_symbolic_link_to_a_folder_is_said_not_followed(tmp_path):
    from ppshitu.library.folder import scan

    _touch(tmp_path / "elsewhere" / "a.jpg")
    _touch(tmp_path / "photos" / "b.jpg")
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos" / "phone")
    os.symlink(tmp_path / "photos", tmp_path / "photos" / "loop")
    skipped = {}
    found, _ = scan(tmp_path / "photos", skipped=skipped)
    assert sorted(found) == ["b.jpg"]
    assert "not followed" in skipped["phone"] and "not followed" in skipped["loop"]


def test_predict_system_says_what_a_folder_listing_left_out(tmp_path, monkeypatch, caplog):
    """list_images (predict_system's and quantize's folder listing) passed over an unlistable sub-folder and
    symbolic links to folders in silence, and called an unlistable folder one that 'holds no images'."""
    import logging

    import pytest

    from ppshitu.utils.image import ImageReadError, list_images

    _touch(tmp_path / "photos" / "a.jpg")
    _touch(tmp_path / "photos" / "locked" / "b.jpg")
    os.symlink(tmp_path / "photos", tmp_path / "photos" / "loop")
    real_scandir = os.scandir

    def scandir(path="."):  # permission denied, as for a user without root's override
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="ppshitu"):
        assert list_images(tmp_path / "photos") == [str(tmp_path / "photos" / "a.jpg")]
    text = caplog.text
    assert "locked (Permission denied)" in text and "could not be listed" in text
    assert "loop" in text and "not followed" in text
    with pytest.raises(ImageReadError, match="cannot be listed: Permission denied"):
        list_images(tmp_path / "photos" / "locked")


def test_dir_that_is_not_a_folder_says_what_it_is(tmp_path):
    """index_folder --dir photo.jpg said 'no such folder'; --dir LINK (an unmounted drive) named only the target."""
    import pytest

    from ppshitu.errors import ConfigError
    from ppshitu.library.folder import _check_dir

    _touch(tmp_path / "photo.jpg")
    os.symlink("/nonexistent/drive", tmp_path / "link")
    with pytest.raises(ConfigError, match="photo.jpg: a file, not a folder"):
        _check_dir({}, tmp_path / "photo.jpg")
    with pytest.raises(ConfigError, match=r"link \(-> /nonexistent/drive\): no such folder"):
        _check_dir({}, tmp_path / "link")
    with pytest.raises(ConfigError, match="gone: no such folder"):
        _check_dir({}, tmp_path / "gone")
