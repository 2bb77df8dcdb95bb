"""Start a detector from published weights, given by URL (downloaded once into a cache)
or by local path: PP-LCNet ImageNet weights (`Arch.pretrained`, backbone only) or a
whole detector's `.pdparams` (`Global.pretrained_model`, e.g. PP-ShiTu mainbody)."""
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request

import paddle

from ..errors import PPShiTuError

log = logging.getLogger(__name__)
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ppshitu", "weights")


class WeightsError(PPShiTuError):
    pass


def resolve(path_or_url, cache_dir=None):
    """A local file for `path_or_url`; URLs are downloaded once into `cache_dir`."""
    if not path_or_url.startswith(("http://", "https://")):
        path = path_or_url if os.path.isfile(path_or_url) else path_or_url + ".pdparams"
        if not os.path.isfile(path):
            raise WeightsError(f"weights not found: {path_or_url} (nor {path_or_url}.pdparams)")
        return path
    cache_dir = cache_dir or os.environ.get("PPSHITU_WEIGHTS_CACHE", CACHE_DIR)
    target = os.path.join(cache_dir, os.path.basename(path_or_url.split("?")[0]))
    if os.path.isfile(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    log.info("downloading %s -> %s", path_or_url, target)
    part = None
    try:
        with urllib.request.urlopen(path_or_url, timeout=30) as resp, \
                tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as tmp:
            part = tmp.name
            shutil.copyfileobj(resp, tmp)
        os.replace(part, target)  # atomic: an interrupted download leaves no half file under the name
    except (urllib.error.URLError, OSError) as e:
        if part is not None and os.path.exists(part):
            os.unlink(part)
        raise WeightsError(f"cannot download {path_or_url} ({getattr(e, 'reason', e)}); offline? download it "
                           f"elsewhere and put it at {target}, or give a local path instead") from None
    return target


def load_weights(layer, path_or_url, where, strict_shapes=True):
    """Load matching parameters into `layer`; returns the number loaded.

    Keys are matched exactly, or after dropping a leading component (`backbone.x` vs `x`),
    so both backbone-only and whole-model files fit. Keys without a counterpart (an
    ImageNet classifier's fc) are skipped and counted; shape mismatches are errors."""
    path = resolve(path_or_url)
    try:
        state = paddle.load(path)
    except Exception as e:  # paddle raises assorted types for a corrupt file
        raise WeightsError(f"{where}: cannot read weights {path}: {e}") from None
    own = layer.state_dict()
    matched, unused = {}, []
    for key, value in state.items():
        target = key if key in own else key.split(".", 1)[-1] if key.split(".", 1)[-1] in own else None
        if target is None:
            unused.append(key)
            continue
        if list(value.shape) != list(own[target].shape):
            raise WeightsError(f"{where}: {path}: {key} has shape {list(value.shape)}, the model's {target} "
                               f"has {list(own[target].shape)}; do the weights fit this Arch?")
        matched[target] = value
    if not matched:
        raise WeightsError(f"{where}: no parameter of {path} matches the model (first keys: {list(state)[:3]})")
    layer.set_state_dict(matched)
    log.info("%s: loaded %d/%d tensors from %s (%d unused in the file)", where, len(matched), len(own), path,
             len(unused))
    return len(matched)
