"""Which program a model directory gives OpenVINO, converting a Paddle 3 PIR program when it must. In this order:

  inference.xml + .bin     an OpenVINO IR: written by `write_ir` at export time, or by tools/quantize.py
                           (int8); `inference.yml` names it (`openvino_model: inference.xml`)
  inference.pdmodel        PP-ShiTu's published legacy models and legacy exports: read directly
                           (OpenVINO's Paddle front end, `multiclass_nms3` included)
  inference.onnx           an imported ONNX encoder (tools/import_model.py): read directly
  inference.json           Paddle 3 PIR, which OpenVINO cannot read: converted once (paddle2onnx, opset 17,
                           in a child process, then `ov.convert_model`) into an IR cached under
                           $PPSHITU_OPENVINO_CACHE (default ~/.cache/ppshitu/openvino), keyed by the program,
                           the weights and the converter versions; model directories are never written to

Why opset 17: paddle2onnx writes Paddle's hard_swish as `HardSigmoid x Mul` below opset 14. OpenVINO's CPU
plugin runs ONNX HardSigmoid with its reference kernel in plain NCHW layout, so every hard-swish of LCNet
costs two layout reorders and a reference pass, and nothing fuses into the convolutions: the PicoDet
detector ran 2.4x slower than the legacy read (profiled on PicoDet-LCNet x2.5 @640, f32: 158 reorders
~30% of the time, the 96 HardSigmoid and their Mul another ~19%). With opset 17 it is one `HardSwish`
(OpenVINO `HSwish`), fused into the convolution like the legacy read's: the converted IR then runs as
fast as the direct read of a legacy export of the same network (bench/results/bench_runtimes.md). The
upsample (reshape/expand instead of nearest_interp in ppshitu's PIR exports) costs nothing measurable.
The few HardSigmoid left (LCNet's SE blocks) are rewritten as Clamp(x * alpha + beta, 0, 1), which fuses
(passes.optimize_for_cpu).
"""
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile

from ...errors import ConfigError
from ...utils.files import open_regular
from ..runtime_base import model_files
from ..spec import SPEC_FILE, read_spec
from . import OpenVINOError, _ov
from .passes import optimize_for_cpu

log = logging.getLogger("ppshitu.infer")

IR_FILES = ("inference.xml", "inference.bin")
ONNX_OPSET = 17
CONVERTER_VERSION = 2  # bump when the conversion changes, so cached IRs are rebuilt


def ir_path(model_dir, spec=None):
    """The IR .xml to run, or None. inference.yml's `openvino_model` names it; an unnamed inference.xml is
    used only where the directory has no Paddle program (a re-export leaves an old IR behind, and it
    rewrites inference.yml without the name, so that IR is ignored)."""
    spec = read_spec(model_dir) if spec is None else spec
    named = (spec or {}).get("openvino_model")
    xml = os.path.join(model_dir, named or IR_FILES[0])
    present = os.path.isfile(xml) and os.path.isfile(os.path.splitext(xml)[0] + ".bin")
    if named:
        if not present:
            raise ConfigError(f"{os.path.join(model_dir, SPEC_FILE)}: openvino_model {named!r} is missing "
                              f"(or its .bin is)")
        return xml
    if present and model_files(model_dir)[0].endswith(".xml"):
        return xml
    return None


def resolve_program(model_dir, cache_dir=None):
    """(path OpenVINO reads, kind): kind is 'ir', 'legacy' (direct .pdmodel read), 'onnx' (imported) or 'converted'."""
    spec = read_spec(model_dir)
    xml = ir_path(model_dir, spec)
    if xml:
        return xml, "ir"
    prog, params = model_files(model_dir)
    if prog.endswith(".pdmodel"):
        return prog, "legacy"
    if prog.endswith(".onnx"):  # imported (tools/import_model.py): ONNX is OpenVINO's own front end
        return prog, "onnx"
    return cached_ir(model_dir, prog, params, cache_dir), "converted"


# ---------------------------------------------------------------- the conversion cache
def cache_root(cache_dir=None):
    return (cache_dir or os.environ.get("PPSHITU_OPENVINO_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "ppshitu", "openvino"))


def _converter_versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {"converter": CONVERTER_VERSION, "opset": ONNX_OPSET}
    for pkg in ("openvino", "paddle2onnx", "paddlepaddle"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def conversion_key(prog, params):
    h = hashlib.sha256(json.dumps(_converter_versions(), sort_keys=True).encode())
    for path in (prog, params):
        with open_regular(path) as f:  # regular files only (utils/files.py): a FIFO would block the hash
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:24]


def cached_ir(model_dir, prog, params, cache_dir=None):
    """The IR of a PIR program, converted on first use and cached; returns the .xml path."""
    out = os.path.join(cache_root(cache_dir), conversion_key(prog, params))
    xml = os.path.join(out, IR_FILES[0])
    if os.path.isfile(xml) and os.path.isfile(os.path.join(out, IR_FILES[1])):
        return xml
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = make_temp_dir(os.path.dirname(out))
    try:
        log.info("converting %s to OpenVINO IR (once; cached in %s)", model_dir, out)
        convert_pir(prog, params, os.path.join(tmp, IR_FILES[0]))
        try:
            os.rename(tmp, out)
        except OSError:  # another process converted it first
            if not os.path.isfile(xml):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


def make_temp_dir(parent, prefix=".tmp-"):
    """A temporary directory inside `parent` (renamed into place when complete), with the
    permissions a plain mkdir would give it (mkdtemp's are 0700)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


# ---------------------------------------------------------------- PIR -> ONNX -> IR
def convert_pir(prog, params, xml_out):
    """PIR inference.json + .pdiparams -> OpenVINO IR at `xml_out` (paddle2onnx runs in a child process:
    it needs PIR on, which a process that loaded a legacy model may not have, and it prints a lot)."""
    try:
        import paddle2onnx  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{os.path.dirname(prog)}: OpenVINO cannot read a PIR program (inference.json); "
                          f"converting it needs paddle2onnx (pip install paddle2onnx), or export with "
                          f"Global.export_format: legacy, or write the IR at export time "
                          f"(ppshitu.infer.openvino_runtime.write_ir)") from e
    onnx_path = os.path.splitext(xml_out)[0] + ".onnx"
    env = dict(os.environ, FLAGS_enable_pir_api="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    code = ("import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], "
            "opset_version=int(sys.argv[4]), auto_upgrade_opset=False, enable_onnx_checker=True, "
            "enable_optimize=True)")
    proc = subprocess.run([sys.executable, "-c", code, prog, params, onnx_path, str(ONNX_OPSET)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.isfile(onnx_path):
        raise OpenVINOError(f"{prog}: paddle2onnx failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
    ov = _ov()
    model = optimize_for_cpu(ov.convert_model(onnx_path))
    ov.save_model(model, xml_out, compress_to_fp16=False)  # fp16 weights would change fp32 results
    os.remove(onnx_path)
    return xml_out


def write_ir(model_dir):
    """Write inference.xml/.bin beside a Paddle export (PIR or legacy) and name them in inference.yml
    (`openvino_model`), so the openvino backend loads them without converting. Returns the .xml path."""
    from ..spec import write_spec

    prog, params = model_files(model_dir)
    if prog.endswith(".xml"):
        raise ConfigError(f"{model_dir}: holds an OpenVINO IR only; there is no Paddle program to convert")
    xml = os.path.join(model_dir, IR_FILES[0])
    if prog.endswith(".pdmodel"):
        ov = _ov()
        ov.save_model(optimize_for_cpu(ov.Core().read_model(prog)), xml, compress_to_fp16=False)
    else:  # through the conversion cache: a model already run on openvino is not converted again
        cached = cached_ir(model_dir, prog, params)
        for src, dst in zip((cached, os.path.splitext(cached)[0] + ".bin"), IR_FILES):
            shutil.copyfile(src, os.path.join(model_dir, dst))
    spec = read_spec(model_dir)
    if spec is not None:
        spec["openvino_model"] = IR_FILES[0]
        write_spec(model_dir, **spec)
    return xml
