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
    return field.min_value is not None or field.max_value is not None or field.choices is not None \
        or field.only is not None


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
    from ppshitu.rec.data.loader import LOADER_SCHEMA
    return {"Arch.nms": NMS_SCHEMA, "DataLoader.Train": SECTION_SCHEMA, "DataLoader.Train.loader": LOADER_SCHEMA}


def outside(field):
    """Values just outside each declared bound."""
    step = 1 if int in field.types else 0.5
    out = []
    if field.min_value is not None:
        out.append(field.min_value if getattr(field, "min_exclusive", False) else field.min_value - step)
    if field.max_value is not None:
        out.append(field.max_value if getattr(field, "max_exclusive", False) else field.max_value + step)
    if field.choices is not None and int in field.types:
        out.append(max(c for c in field.choices if isinstance(c, int)) + 1)
    if field.only is not None and int in field.types:
        out.append(max(c for c in field.only if isinstance(c, int)) + 1)
    if float in field.types:
        out.append(math.nan)
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
    if isinstance(v, list):
        return "[" + ", ".join(map(_yaml, v)) + "]"
    return ".nan" if isinstance(v, float) and math.isnan(v) else repr(v)


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


# ------------------------------------------------------------------ registered components (round 3b)
def component_registries():
    """Every registry of training components: the classes a config names (Arch.Head, Arch.Neck, Loss.Train,
    Optimizer, Optimizer.lr, DataLoader.*.dataset / sampler / transform_ops, Metric.Eval, det transforms)."""
    from ppshitu.det.transforms import BATCH_TRANSFORMS, SAMPLE_TRANSFORMS
    from ppshitu.engine.optim import LR_SCHEDULES, OPTIMIZERS
    from ppshitu.rec.data.loader import DATASETS
    from ppshitu.rec.data.sampler import SAMPLERS
    from ppshitu.rec.data.transforms import TRANSFORMS
    from ppshitu.rec.heads import HEADS
    from ppshitu.rec.losses import LOSSES
    from ppshitu.rec.metrics import METRICS
    from ppshitu.rec.necks import NECKS
    return {"Arch.Head": HEADS, "Arch.Neck": NECKS, "Loss.Train": LOSSES, "Optimizer": OPTIMIZERS,
            "Optimizer.lr": LR_SCHEDULES, "DataLoader.Train.dataset": DATASETS, "DataLoader.Train.sampler": SAMPLERS,
            "DataLoader.Train.dataset.transform_ops": TRANSFORMS, "Metric.Eval": METRICS,
            "det DataLoader.Train.dataset.transform_ops": SAMPLE_TRANSFORMS,
            "det DataLoader.Train.dataset.batch_transform_ops": BATCH_TRANSFORMS}


def registered_components():
    import inspect
    for where, registry in component_registries().items():
        for name in registry.names():
            cls = registry.get(name)
            params = [p for p in inspect.signature(cls.__init__).parameters.values()
                      if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            yield f"{where}.{name}", cls, params


COMPONENTS = list(registered_components())


def numeric_component_fields():
    for where, cls, _ in COMPONENTS:
        for key, field in (getattr(cls, "CONFIG_SCHEMA", None) or {}).items():
            if isinstance(field, Field) and (is_numeric(field) or (field.item is not None and is_numeric(field.item))):
                yield where, cls, key, field


def test_every_registered_component_declares_every_key_and_each_numeric_range():
    """Each constructor argument of each registered class is in its CONFIG_SCHEMA (a Field, or SUPPLIED for
    one the code passes), and each numeric Field (and each numeric list's items) has a range."""
    from ppshitu.registry import SUPPLIED
    missing = []
    for where, cls, params in COMPONENTS:
        schema = getattr(cls, "CONFIG_SCHEMA", None)
        if schema is None:
            missing.append(f"{where}: no CONFIG_SCHEMA")
            continue
        for p in params:
            spec = schema.get(p.name)
            if spec is not SUPPLIED and not isinstance(spec, Field):
                missing.append(f"{where}.{p.name}: not in CONFIG_SCHEMA")
            elif isinstance(spec, Field):
                if is_numeric(spec) and not has_range(spec):
                    missing.append(f"{where}.{p.name}: a number without a range")
                if spec.item is not None and is_numeric(spec.item) and not has_range(spec.item):
                    missing.append(f"{where}.{p.name}: a list of numbers without a range for its items")
        extra = sorted(set(schema) - {p.name for p in params})
        if extra:
            missing.append(f"{where}: CONFIG_SCHEMA names {extra}, which the constructor does not take")
    assert len(COMPONENTS) > 30, [c[0] for c in COMPONENTS]
    assert not missing, "component keys without a declared type and range:\n  " + "\n  ".join(missing)


def _component_probes(field):
    """Values just outside `field`'s range: scalars, or a list with one item outside its items' range."""
    probes = outside(field) if is_numeric(field) else []
    if field.item is not None and is_numeric(field.item):
        n = field.length or 2
        good = field.item.min_value if field.item.min_value is not None and not field.item.min_exclusive \
            else field.item.max_value
        for bad in outside(field.item):
            for pos in range(n):
                v = [good] * n
                v[pos] = bad
                probes.append(v)
    return probes


@pytest.mark.parametrize("where,cls,key,field", list(numeric_component_fields()),
                         ids=[f"{w}.{k}" for w, _, k, _ in numeric_component_fields()])
def test_a_component_value_outside_its_range_is_refused_naming_the_key(where, cls, key, field):
    from ppshitu.registry import check_values
    probes = _component_probes(field)
    assert probes, f"{where}.{key}: no declared bound to probe"
    for bad in probes:
        with pytest.raises(ConfigError) as e:
            check_values(cls, {key: bad}, where)
        assert where in str(e.value) and key in str(e.value), str(e.value)


# the round's probes, each through `-o` on a shipped config and the builder training uses
REC_CFG = ROOT / "configs" / "rec" / "demo_rec.yaml"


def _build_section(cfg, override):
    import paddle

    from ppshitu.engine.optim import build_optimizer
    from ppshitu.rec.data.loader import build_dataloader
    from ppshitu.rec.losses import CombinedLoss
    from ppshitu.rec.model import build_rec_model
    section = override.split(".")[0]
    if section == "Arch":
        return build_rec_model(cfg.Arch, (3, 64, 64), class_num=10)
    if section == "Loss":
        return CombinedLoss(cfg.Loss.Train)
    if section == "DataLoader":
        return build_dataloader(cfg.DataLoader.Train, "DataLoader.Train", train=True, rank=0, world_size=1)
    return build_optimizer(cfg.Optimizer, [paddle.create_parameter([2], "float32")], 2, 3)


COMPONENT_PROBES = [
    ("Arch.Head.scale=-30", "scale"),
    ("Arch.Head.margin=.nan", "margin"),
    ("Optimizer.momentum=-0.9", "momentum"),
    ("Optimizer.beta1=1.5", "beta1"),
    ("Optimizer.lr.warmup_epoch=-2", "warmup_epoch"),
    ("Optimizer.regularizer.coeff=-1", "coeff"),
    ("Optimizer.lr.learning_rate=-0.05", "learning_rate"),
    ("Optimizer.lr.learning_rate=.nan", "learning_rate"),
    ("Loss.Train.0.weight=-1", "weight"),
    ("DataLoader.Train.loader.num_workers=-1", "num_workers"),
    ("DataLoader.Train.loader.num_workers=100000", "num_workers"),
]


def _applies(config, override):
    """Whether `config` has the component `override` reaches (a head; the optimizer kind with that key)."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "rec" / config).read_text())
    opt = (raw.get("Optimizer") or {}).get("name")
    if override.startswith("Arch.Head"):
        return bool((raw.get("Arch") or {}).get("Head"))
    if override.startswith("Optimizer.beta1"):
        return opt in ("Adam", "AdamW")
    if override.startswith("Optimizer.momentum"):
        return opt == "Momentum"
    if override.startswith("Optimizer.regularizer"):
        return bool((raw.get("Optimizer") or {}).get("regularizer"))
    return True


# only the combinations a config can express, so no test is collected to be skipped
@pytest.mark.parametrize("config,override,key", [
    (c, o, k) for c in ("demo_rec.yaml", "EfficientNetLite0_demo.yaml", "MobileNetV1_retrieval_CUB.yaml",
                        "EfficientNetLite0_retrieval_CUB.yaml")
    for o, k in COMPONENT_PROBES if _applies(c, o)])
def test_the_reported_component_probes_are_refused(config, override, key):
    from ppshitu.schemas import TRAIN_SCHEMA
    path = ROOT / "configs" / "rec" / config
    cfg = load_config(path, [], TRAIN_SCHEMA)
    section = override.split("=")[0].rsplit(".", 1)[0]
    node = cfg
    for part in section.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
    assert node is not None, f"{config} has no {section}: _applies should have left this out"
    if override.startswith("Loss.Train.0."):  # {CELoss: {weight: ...}}: the key sits under the loss's name
        name = next(iter(cfg.Loss.Train[0]))
        override = override.replace("Loss.Train.0.", f"Loss.Train.0.{name}.")
    offline = ["Arch.Backbone.pretrained=False"] if override.startswith("Arch") else []  # no weights download
    cfg = load_config(path, offline + [override], TRAIN_SCHEMA)
    with pytest.raises(ConfigError) as e:
        _build_section(cfg, override)
    assert key in str(e.value) and override.split(".")[0] in str(e.value), str(e.value)


def test_a_component_range_error_is_one_line_from_train():
    """tools/train.py: one line naming the key, exit 2 (the loader is checked before any list is read)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(REC_CFG),
                           "-o", "DataLoader.Train.loader.num_workers=-1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert "DataLoader.Train.loader.num_workers" in err.strip().splitlines()[-1], err[-3000:]


# ------------------------------------------------------------------ thread counts (round 3b)
def test_every_thread_count_key_is_bounded():
    """Global.cpu_num_threads=100000 made Paddle's C++ abort (SIGABRT): every key that asks for threads or
    worker processes has an upper bound, at most MAX_THREADS."""
    from ppshitu.schemas import MAX_THREADS
    keys = [(path, f) for _, _, path, f in ALL] + [(f"{w}.{p}", f) for w, s in component_schemas().items()
                                                   for p, f in leaves(s)]
    threads = [(path, f) for path, f in keys if any(w in path.rsplit(".", 1)[-1] for w in ("thread", "workers"))]
    assert len(threads) >= 5, threads
    bad = [path for path, f in threads if f.max_value is None or f.max_value > MAX_THREADS]
    assert not bad, bad


@pytest.mark.parametrize("override,key", [
    ("Global.threshold=1.5", "Global.threshold"),
    ("Global.threshold=-1", "Global.threshold"),
    ("IndexProcess.score_thres=2", "IndexProcess.score_thres"),      # IP: a cosine, at most 1
    ("Global.image_shape=[3,0,0]", "Global.image_shape"),
    ("Global.image_shape=[3,640]", "Global.image_shape"),
    ("Global.rec_nms_thresold=5", "Global.rec_nms_thresold"),
    ("IndexProcess.min_crop_std=300", "IndexProcess.min_crop_std"),
    ("Global.cpu_num_threads=100000", "Global.cpu_num_threads"),
    ("IndexProcess.num_workers=100000", "IndexProcess.num_workers"),
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
