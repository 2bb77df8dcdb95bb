"""ppshitu: open-set image recognition by retrieval (mainbody detection -> embedding -> gallery).

    import ppshitu

    ppshitu.build_gallery(config, "labels.txt", image_root="gallery", index_dir="gallery/index")
    system = ppshitu.RecognitionSystem.from_config(config, overrides=["IndexProcess.index_dir=gallery/index"])
    system.predict("photo.jpg")

The names below load on first use (module __getattr__): `import ppshitu` imports neither paddle nor faiss.
ppshitu/api.py says what each gallery function does; the `ppshitu` command is ppshitu/cli_main.py.
"""
import logging
import os

from . import paddle_import

# Before any module imports paddle: its CPU kernels on all cores (or OMP_NUM_THREADS), set through Paddle's
# API rather than left to the variable, and its import-time warnings about neither (ppshitu/paddle_import.py).
paddle_import.install()

# Before gRPC is imported (pymilvus, the milvus gallery backend; read at grpc's import): no fork() handlers.
# With them, every fork of a process that has used gRPC (a DataLoader worker, a test's child) logs
# "fork_posix.cc ... Other threads are currently calling into gRPC, skipping fork() handlers"; no child uses
# its parent's gRPC channels, each opens its own, so the handlers had nothing to keep working.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
# ... and no gRPC core log lines: Milvus Lite's server throttles the client's keepalive pings, which gRPC logs
# ("Received a GOAWAY ... too_many_pings") while the channel goes on working; real failures raise in Python.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

# FAISS's loader logs at INFO which SIMD build it tried and loaded ("Could not load library with AVX512 support
# due to: ModuleNotFoundError ..."): shown by every tool that logs at INFO. Its warnings still show.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

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
