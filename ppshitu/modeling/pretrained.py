"""Backbone weights: `pretrained: True` fetches PaddleClas's official ImageNet weights once
into ~/.cache/ppshitu/weights (fails fast offline, saying how to pass a file); a string
is a local `.pdparams` path (or prefix)."""
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request

import paddle

from ..errors import PPShiTuError
from . import paddleclas_adapter

log = logging.getLogger("ppshitu.modeling")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ppshitu", "weights")
DOWNLOAD_TIMEOUT_S = 10


class PretrainedError(PPShiTuError):
    pass


def download(url, cache_dir=None, timeout=DOWNLOAD_TIMEOUT_S):
    cache_dir = cache_dir or os.environ.get("PPSHITU_WEIGHTS_CACHE", CACHE_DIR)
    target = os.path.join(cache_dir, os.path.basename(url))
    if os.path.isfile(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    log.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, \
                tempfile.NamedTemporaryFile(dir=cache_dir, delete=False) as tmp:
            shutil.copyfileobj(resp, tmp)
        os.replace(tmp.name, target)  # no half-written file under the real name
    except (urllib.error.URLError, OSError) as e:
        raise PretrainedError(
            f"Arch.Backbone.pretrained: cannot download {url} ({getattr(e, 'reason', e)}). Offline? Download it "
            f"elsewhere and pass its path, e.g. -o Arch.Backbone.pretrained=/path/to/{os.path.basename(url)} "
            f"(or put it at {target})") from None
    return target


def resolve(pretrained, backbone_name):
    """The local .pdparams file for `pretrained` (True or a path)."""
    if pretrained is True:
        return download(paddleclas_adapter.weights_url(backbone_name))
    path = str(pretrained)
    for candidate in (path, path + ".pdparams"):
        if os.path.isfile(candidate):
            return candidate
    raise PretrainedError(f"Arch.Backbone.pretrained: {path} not found (nor {path}.pdparams)")


def load_backbone_weights(backbone, pretrained, backbone_name):
    """Load every tensor of the file that the backbone has; keys may carry a `backbone.` prefix
    (a whole RecModel's weights). Returns how many were loaded."""
    path = resolve(pretrained, backbone_name)
    try:
        state = paddle.load(path)
    except Exception as e:  # paddle raises assorted types for a corrupt file
        raise PretrainedError(f"Arch.Backbone.pretrained: cannot read {path}: {e}") from None
    state = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
    own = backbone.state_dict()
    matched = {k: v for k, v in state.items() if k in own and list(v.shape) == list(own[k].shape)}
    wrong = [k for k, v in state.items() if k in own and list(v.shape) != list(own[k].shape)]
    if not matched or wrong:
        raise PretrainedError(f"Arch.Backbone.pretrained: {path} does not fit {backbone_name} "
                              f"({len(matched)} tensors match, {len(wrong)} differ in shape, e.g. {wrong[:2]})")
    backbone.set_state_dict(matched)
    log.info("loaded %d/%d backbone tensors from %s", len(matched), len(own), path)
    return len(matched)
