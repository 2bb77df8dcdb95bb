"""The commands behind `ppshitu <command>` (ppshitu/cli_main.py) and the repository's tools/*.py.

Each module holds what its tool did: `main(argv=None)` parses the arguments (sys.argv[1:] when None) and runs,
returning what the tool's tests look at (a summary, a report, an exit status), and `cli(argv=None)` runs main
under ppshitu.cli.run_main with the tool's exit status. tools/<name>.py and deploy/serve.py only call cli(),
so `python tools/build_gallery.py ARGS` and `ppshitu build_gallery ARGS` are one code path.

Nothing is imported here: `ppshitu --help` lists the commands without loading any of them.
"""

# command -> (module under ppshitu.commands, or None for a script that needs a checkout; the script it mirrors,
# relative to the repository; a one-line summary)
COMMANDS = {
    "train": ("train", "tools/train.py", "train a recognition or detection model from a config"),
    "eval": ("eval", "tools/eval.py", "evaluate weights on the config's evaluation data"),
    "export": ("export_model", "tools/export_model.py", "export trained weights to an inference directory"),
    "build_gallery": ("build_gallery", "tools/build_gallery.py",
                      "build, append to, remove from or compact a gallery"),
    "predict_system": ("predict_system", "tools/predict_system.py",
                       "recognise the objects in images (detector -> embeddings -> gallery)"),
    "eval_system": ("eval_system", "tools/eval_system.py",
                    "score the recognition system on labelled scenes"),
    "quantize": ("quantize", "tools/quantize.py", "quantize a model to int8 for OpenVINO"),
    "serve": ("serve", "deploy/serve.py", "serve recognition and gallery management over HTTP, with a web page"),
    "index_folder": ("index_folder", "tools/index_folder.py", "index a folder of images into a gallery, incrementally"),
    "search": ("search", "tools/search.py", "search a gallery by image; write a contact sheet"),
    "similarity": ("similarity", "tools/similarity.py", "how alike two images are, with a calibrated verdict"),
    "find_duplicates": ("find_duplicates", "tools/find_duplicates.py",
                        "find exact and near-duplicate images; JSON and HTML report"),
    "calibrate_gallery": ("calibrate_gallery", "tools/calibrate_gallery.py",
                          "choose score_thres for a target precision on the gallery's own items; record it"),
    "gallery_doctor": ("gallery_doctor", "tools/gallery_doctor.py",
                       "check a gallery's labels: recall per label, confusions, mislabels, duplicates, outliers"),
    "migrate_gallery": ("migrate_gallery", "tools/migrate_gallery.py",
                        "copy a gallery between backends (FAISS <-> Milvus)"),
    "import_model": ("import_model", "tools/import_model.py",
                     "import ONNX encoders (image; text + tokenizer for text search) as a model directory"),
    "convert_ppshitu_index": ("convert_ppshitu_index", "tools/convert_ppshitu_index.py",
                              "import a PP-ShiTu index directory as a gallery"),
    # the walkthrough on generated data: the repository's configs/, models/demo/ and dataset/ (a checkout only)
    "demo": (None, "tools/demo.py", "the whole job end to end on generated data (in a checkout: make demo)"),
}

# other names a command answers to (the tool's own name); `-` and `_` are interchangeable in every name
ALIASES = {"export_model": "export"}
