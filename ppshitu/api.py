"""ppshitu's Python API, reached as `import ppshitu` (README, "Python API"):

    import ppshitu

    config = "configs/inference/inference_general.yaml"
    ppshitu.build_gallery(config, "gallery/labels.txt", image_root="gallery", index_dir="gallery/index")
    ppshitu.append_to_gallery(config, "gallery/more.txt", image_root="gallery", index_dir="gallery/index")
    ppshitu.remove_from_gallery(config, "gallery/old.txt", image_root="gallery", index_dir="gallery/index")
    system = ppshitu.RecognitionSystem.from_config(config, overrides=["IndexProcess.index_dir=gallery/index"])
    system.predict("photo.jpg")            # [{"bbox", "rec_docs", "rec_scores", ...}]
    system.search("photo.jpg", k=5)        # [{"rank", "label", "score", "path", "id"}]

The gallery functions are tools/build_gallery.py's `IndexProcess.index_operation` new / append / remove
(ppshitu.gallery.builder.build_gallery) on an inference config: a YAML file's path or a loaded config, with
`overrides` as -o takes them ("Section.key=value"); the keyword arguments given (data_file, image_root,
index_dir) are set after the overrides. Each returns the summary the tool prints ({"operation", "added", "count",
"labels", ...}). Errors are ppshitu.PPShiTuError subclasses (ConfigError, GalleryError ...) naming the file, key
or value at fault.
"""
import copy
import os

__all__ = ["load_inference_config", "build_gallery", "append_to_gallery", "remove_from_gallery"]


def load_inference_config(config, overrides=()):
    """An inference config (PP-ShiTu's sections: Global, DetPreProcess, RecPreProcess, IndexProcess) from a YAML
    file's path, or a copy of a loaded config (a dict), with `overrides` (["IndexProcess.index_dir=g", ...])
    applied, checked against the inference schema. Raises ConfigError naming a bad key or value."""
    from .config import apply_override, load_config, to_attrdict, to_plain, validate
    from .schemas import INFER_SCHEMA

    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides, INFER_SCHEMA)
    cfg = copy.deepcopy(to_plain(config))
    applied = [".".join(map(str, apply_override(cfg, text))) for text in overrides or ()]
    return to_attrdict(validate(cfg, INFER_SCHEMA, source="config", override_paths=applied))


def _gallery_config(config, overrides, operation, **index_process):
    cfg = load_inference_config(config, overrides)
    ip = cfg["IndexProcess"]
    ip["index_operation"] = operation
    for key, value in index_process.items():
        if value is not None:
            ip[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
    return cfg


def build_gallery(config, data_file=None, *, image_root=None, index_dir=None, overrides=(), rec=None, det=None):
    """A new gallery at IndexProcess.index_dir from the `relpath<TAB>label` lines of `data_file` (paths under
    `image_root`), replacing one already there (atomically). `rec` / `det`: predictors to reuse (a
    RecognitionSystem's .rec / .det); by default made from the config's Global.*_inference_model_dir."""
    from .gallery.builder import build_gallery as run

    return run(_gallery_config(config, overrides, "new", data_file=data_file, image_root=image_root,
                               index_dir=index_dir), rec=rec, det=det)


def append_to_gallery(config, data_file=None, *, image_root=None, index_dir=None, overrides=(), rec=None, det=None):
    """Add the images of `data_file` to the gallery (no retraining); images already in it are skipped."""
    from .gallery.builder import build_gallery as run

    return run(_gallery_config(config, overrides, "append", data_file=data_file, image_root=image_root,
                               index_dir=index_dir), rec=rec, det=det)


def remove_from_gallery(config, data_file=None, *, by="path", image_root=None, index_dir=None, overrides=()):
    """Remove from the gallery the images `data_file` lists (`by="path"`: `relpath<TAB>label` lines, the label
    unused) or every image of the labels it lists (`by="label"`: one label per line). Needs no model."""
    from .errors import ConfigError
    from .gallery.builder import build_gallery as run

    if by not in ("path", "label"):
        raise ConfigError(f"remove_from_gallery: by must be 'path' or 'label', got {by!r}")
    return run(_gallery_config(config, overrides, "remove", data_file=data_file, image_root=image_root,
                               index_dir=index_dir, remove_by=by))
