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
