"""ppshitu: open-set image recognition by retrieval (mainbody detection -> embedding -> gallery).

    import ppshitu

    ppshitu.build_gallery(config, "labels.txt", image_root="gallery", index_dir="gallery/index")
    system = ppshitu.RecognitionSystem.from_config(config, overrides=["IndexProcess.index_dir=gallery/index"])
    system.predict("photo.jpg")

The names below load on first use (module __getattr__): `import ppshitu` imports neither paddle nor faiss.
ppshitu/api.py says what each gallery function does; the `ppshitu` command is ppshitu/cli_main.py.
"""
import os

# `import paddle` sets OMP_NUM_THREADS=1 when it is unset, which halves CPU training
# speed on a 2-core machine; default to all cores unless the user chose otherwise.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "RecognitionSystem": "ppshitu.system",
    "build_gallery": "ppshitu.api",
    "append_to_gallery": "ppshitu.api",
    "remove_from_gallery": "ppshitu.api",
    "load_inference_config": "ppshitu.api",
    "Gallery": "ppshitu.gallery",
    "PPShiTuError": "ppshitu.errors",
    "ConfigError": "ppshitu.errors",
    "GalleryError": "ppshitu.gallery.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'ppshitu' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__():
    return sorted({*globals(), *_API})
