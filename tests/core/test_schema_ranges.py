"""Issue 23, class 7: numbers out of range were accepted (exit 0, silently useless).

Every numeric key of the config schemas (training, inference, and the component schemas built on
Field) declares its range; this test walks the schemas, asserts that EVERY numeric key has one (a new
key without a range fails here), and tries a value outside each declared bound through `-o`, which
must be refused naming the key. Plus: the reported probes, a section overridden by a scalar
(`-o Global=3`) named as the section it is, and deploy/serve.py's numeric flags."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppshitu.config import Field, load_config, validate
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA, TRAIN_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
INFER_CFG = ROOT / "configs" / "inference" / "inference_general.yaml"
TRAIN_CFG = ROOT / "configs" / "rec" / "demo_rec.yaml"


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_numeric(field):
    return any(t in (int, float) for t in field.types)


def is_numeric_list(field):
    """A list-valued key whose default is a list of numbers (e.g. image_shape)."""
    return list in field.types and isinstance(field.default, list) and field.default \
        and all(_is_number(v) for v in field.default)


def has_range(field):
    return field.min_value is not None or field.max_value is not None or field.choices is not None


def leaves(schema, prefix=""):
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, Field):
            yield path, spec
        elif isinstance(spec, dict):
            yield from leaves(spec, path)


def component_schemas():
    """Schemas of components (checked by their builders), also made of Fields."""
    from ppshitu.det.data import SECTION_SCHEMA
    from ppshitu.det.model import NMS_SCHEMA
    return {"Arch.nms": NMS_SCHEMA, "DataLoader.Train": SECTION_SCHEMA}


def outside(field):
    """Values just outside each declared bound."""
    step = 1 if int in field.types else 0.5
    out = []
    if field.min_value is not None:
        out.append(field.min_value if getattr(field, "min_exclusive", False) else field.min_value - step)
    if field.max_value is not None:
        out.append(field.max_value + step)
    return out


def numeric_leaves():
    for name, schema, cfg in (("train", TRAIN_SCHEMA, TRAIN_CFG), ("infer", INFER_SCHEMA, INFER_CFG)):
        for path, field in leaves(schema):
            yield name, cfg, path, field


ALL = list(numeric_leaves())


def test_every_numeric_key_declares_its_range():
    missing = []
    for name, _, path, field in ALL:
        if is_numeric(field) and not has_range(field):
            missing.append(f"{name}: {path}")
        if is_numeric_list(field):
            item = getattr(field, "item", None)
            if item is None or not has_range(item):
                missing.append(f"{name}: {path} (a list of numbers: its items' range)")
    for where, schema in component_schemas().items():
        for path, field in leaves(schema, where):
            if is_numeric(field) and not has_range(field):
                missing.append(f"component: {path}")
    assert not missing, "numeric config keys without a declared range:\n  " + "\n  ".join(missing)


def _yaml(v):
    return repr(v) if not isinstance(v, list) else "[" + ", ".join(map(repr, v)) + "]"


NUMERIC = [a for a in ALL if is_numeric(a[3]) or is_numeric_list(a[3])]


@pytest.mark.parametrize("name,cfg,path,field", NUMERIC, ids=[f"{a[0]}:{a[2]}" for a in NUMERIC])
def test_a_value_outside_each_declared_range_is_refused_naming_the_key(name, cfg, path, field):
    probes = outside(field)
    if is_numeric_list(field):
        item = field.item
        probes = []
        for bad in outside(item):
            for pos in range(len(field.default)):
                v = list(field.default)
                v[pos] = bad
                probes.append(v)
    assert probes, f"{path}: no declared bound to probe"
    for bad in probes:
        with pytest.raises(ConfigError) as e:
            load_config(cfg, [f"{path}={_yaml(bad)}"], TRAIN_SCHEMA if name == "train" else INFER_SCHEMA)
        assert path in str(e.value) and f"-o {path}" in str(e.value), str(e.value)
    # and the default itself is inside the range
    load_config(cfg, [], TRAIN_SCHEMA if name == "train" else INFER_SCHEMA)


def test_component_schemas_refuse_values_outside_their_ranges():
    for where, schema in component_schemas().items():
        for path, field in leaves(schema):
            if not is_numeric(field):
                continue
            for bad in outside(field):
                cfg = {}
                node = cfg
                parts = path.split(".")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                node[parts[-1]] = bad
                if where == "DataLoader.Train":
                    cfg.setdefault("dataset", {})["anno_path"] = "x.json"
                with pytest.raises(ConfigError) as e:
                    validate(cfg, schema, "config", where)
                assert f"{where}.{path}" in str(e.value), str(e.value)


@pytest.mark.parametrize("override,key", [
    ("Global.threshold=1.5", "Global.threshold"),
    ("Global.threshold=-1", "Global.threshold"),
    ("IndexProcess.score_thres=2", "IndexProcess.score_thres"),      # IP: a cosine, at most 1
    ("Global.image_shape=[3,0,0]", "Global.image_shape"),
    ("Global.image_shape=[3,640]", "Global.image_shape"),
    ("Global.rec_nms_thresold=5", "Global.rec_nms_thresold"),
    ("IndexProcess.min_crop_std=300", "IndexProcess.min_crop_std"),
])
def test_the_reported_probes_are_refused(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(INFER_CFG, [override], INFER_SCHEMA)
    assert key in str(e.value), str(e.value)


def test_score_thres_range_follows_dist_type():
    # L2 galleries answer squared distances of unit vectors: 0..4
    cfg = load_config(INFER_CFG, ["IndexProcess.dist_type=L2", "IndexProcess.score_thres=2"], INFER_SCHEMA)
    assert cfg.IndexProcess.score_thres == 2
    with pytest.raises(ConfigError, match="IndexProcess.score_thres"):
        load_config(INFER_CFG, ["IndexProcess.dist_type=L2", "IndexProcess.score_thres=-0.5"], INFER_SCHEMA)
    assert load_config(INFER_CFG, ["IndexProcess.score_thres=-0.5"], INFER_SCHEMA).IndexProcess.score_thres == -0.5


@pytest.mark.parametrize("overrides,cfg,schema", [
    (["Global=3"], INFER_CFG, INFER_SCHEMA),
    (["Global.threshold=0.5", "Global=3"], INFER_CFG, INFER_SCHEMA),
    (["Global=3"], TRAIN_CFG, TRAIN_SCHEMA),
    (["Arch=3"], TRAIN_CFG, TRAIN_SCHEMA),           # a component section (checked by its builder)
    (["IndexProcess=[1, 2]"], INFER_CFG, INFER_SCHEMA),
])
def test_a_section_overridden_by_a_scalar_is_named(overrides, cfg, schema):
    section = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError) as e:
        load_config(cfg, overrides, schema)
    msg = str(e.value)
    assert msg.startswith(f"-o {section}:") and "section" in msg, msg


# ------------------------------------------------------------------ deploy/serve.py's flags
def _serve(*flags):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "serve.py"), "-c", str(INFER_CFG), *flags],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("flags,name", [
    (["--port", "99999"], "--port"),
    (["--port", "-1"], "--port"),
    (["--header-timeout", "nan"], "--header-timeout"),
    (["--read-timeout", "inf"], "--read-timeout"),
    (["--keep-alive", "0"], "--keep-alive"),
    (["--queue-timeout", "-3"], "--queue-timeout"),
    (["--workers", "0"], "--workers"),
    (["--queue", "-1"], "--queue"),
    (["--max-body-mb", "nan"], "--max-body-mb"),
    (["--max-body-mb", "0"], "--max-body-mb"),
    (["--max-pixels", "0"], "--max-pixels"),
    (["--max-files", "0"], "--max-files"),
    (["--max-connections", "0"], "--max-connections"),
])
def test_serve_numeric_flags_are_checked(flags, name):
    proc = _serve(*flags)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert name in err and flags[1] in err, err


def test_settings_refuse_non_finite_and_out_of_range_values():
    from ppshitu.serving.settings import Settings
    for kwargs in ({"header_timeout": math.nan}, {"read_timeout": math.inf}, {"port": 70000}, {"port": -2},
                   {"queue_timeout": math.nan}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            Settings(**kwargs)
