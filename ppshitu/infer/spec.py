"""inference.yml: how to feed an exported model, written next to it at export time,
so gallery building and queries can never preprocess differently from training."""
import hashlib
import os

import yaml

from ..errors import ConfigError

SPEC_FILE = "inference.yml"
_REQUIRED = ("model_type", "input_size", "interpolation", "scale", "mean", "std")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")


def fingerprint(params_path):
    """A short, stable id of the weights: galleries refuse vectors from another model."""
    h = hashlib.sha256()
    from ..utils.files import open_regular

    with open_regular(params_path) as f:  # regular files only (utils/files.py): a FIFO would block the hash
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_spec(model_dir, **spec):
    if "fingerprint" not in spec:  # not setdefault: a quantized OpenVINO directory has no .pdiparams
        spec["fingerprint"] = fingerprint(os.path.join(model_dir, "inference.pdiparams"))
    check_spec(spec, os.path.join(model_dir, SPEC_FILE))
    with open(os.path.join(model_dir, SPEC_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return spec


def read_spec(model_dir):
    """The spec dict, or None for a directory without one (e.g. PP-ShiTu's published models)."""
    path = os.path.join(model_dir, SPEC_FILE)
    if not os.path.isfile(path):
        return None
    from ..utils.files import MAX_CONFIG_BYTES, read_input_text

    spec = yaml.safe_load(read_input_text(path, "model spec", MAX_CONFIG_BYTES, ConfigError)) or {}
    check_spec(spec, path)
    return spec


def check_spec(spec, where):
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ConfigError(f"{where}: missing keys {missing}")
    if spec["model_type"] not in ("rec", "det"):
        raise ConfigError(f"{where}: model_type must be rec or det, got {spec['model_type']!r}")
    if spec["interpolation"] not in _INTERPOLATIONS:
        raise ConfigError(f"{where}: interpolation must be one of {_INTERPOLATIONS}, got {spec['interpolation']!r}")
    if spec["model_type"] == "rec" and "embedding_size" not in spec:
        raise ConfigError(f"{where}: a rec model needs embedding_size")


def check_model_out_dir(out_dir, overwrite=False, what="--out"):
    """Refuse (ConfigError naming the file) an output directory for a model (export, quantize) unless it is
    new or empty, or, with `overwrite`, an existing ppshitu model directory (a valid inference.yml in it):
    a user's folder, a stray inference.yml / inference.json or a file is never replaced."""
    import stat

    if not os.path.lexists(out_dir):
        return
    st = os.lstat(out_dir)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {out_dir} exists and is not a directory; choose a new directory for the model")
    entries = sorted(os.listdir(out_dir))
    if not entries:
        return
    spec_path = os.path.join(out_dir, SPEC_FILE)
    if not os.path.isfile(spec_path) or os.path.islink(spec_path):
        raise ConfigError(f"{what} {out_dir} is not a model directory (no {SPEC_FILE}; it holds "
                          f"{os.path.join(out_dir, entries[0])}); refusing to replace it: choose a new directory")
    try:
        from ..utils.files import read_input_text

        if not isinstance(yaml.safe_load(read_input_text(spec_path, "model spec", 1 << 20, ConfigError)), dict):
            raise ConfigError("not a mapping")
        read_spec(out_dir)
    except (ConfigError, yaml.YAMLError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise ConfigError(f"{what} {out_dir} is not a ppshitu model directory ({spec_path}: {e}); refusing to "
                          f"replace it: choose a new directory") from None
    if not overwrite:
        raise ConfigError(f"{what} {out_dir} already holds a model ({spec_path}); pass --overwrite to replace it")
