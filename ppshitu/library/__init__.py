"""Photo-library tools on top of the recognition model and the gallery (tools/index_folder.py,
tools/search.py, tools/similarity.py, tools/find_duplicates.py).

    folder.py       a folder kept in sync with a gallery, incrementally (SQLite folder state beside it)
    search.py       search by image; sheet.py draws the contact sheet
    similarity.py   cosine of two images + the calibrated verdict; calibration.json holds the thresholds,
                    calibrate.py measures them (python -m ppshitu.library.calibrate -c CONFIG)
    duplicates.py   exact (sha256) + near (gallery k-NN, optional pHash check) duplicates, union-find
                    groups, the --move-to action; report.py writes the JSON + HTML report
    photos.py       scikit-image photos and generated near-duplicates (calibration and bench/bench_duplicates.py)
    common.py       predictors, embedding, and galleries through ppshitu/gallery/base.py's store interface

Every tool works on any gallery store (IndexProcess.backend), through the GalleryStore methods only.
"""
