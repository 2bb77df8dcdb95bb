"""One explicit registry per kind of component, so a config name maps to a class
without eval() or star imports, and a typo fails at build time, naming the choices.

    LOSSES = Registry("loss")

    @LOSSES.register()
    class CELoss: ...

    LOSSES.build("CELoss", {"epsilon": 0.1}, where="Loss.Train[0]")

An entry is either the object itself (`register`, for a class in the registry's own module) or a
"module:attr" string (`add`, or the `entries` given to the constructor) naming where it lives: such an
entry is imported the first time it is looked up. So a registry module names its kinds without importing
them (and the modules that implement them never import the registry: no import cycle), `names()` and
`in` never import anything (config choices and did-you-mean errors cost nothing: no paddle, no faiss,
no pymilvus), and one line in the registry is the whole registration of a kind that lives in its own file.

    RUNTIMES = Registry("inference_backend", {"paddle": "ppshitu.infer.paddle_runtime:PaddleRuntime"})
    RUNTIMES.get("paddle")                  # imports ppshitu.infer.paddle_runtime now

Entries may carry tags (`add(name, target, task="det")`) that `names(**tags)` and `get(name, **tags)`
filter on without importing. A provider ("module:attr" of a function returning {name: entry}) registers
a family whose names are only known once its module is imported (PaddleClas's backbones); it is loaded
when a lookup misses, or by `load_providers()`.

Constructor arguments are checked against the signature, so an unknown or
misspelled key is reported with its config path and the nearest valid name. Their values are checked
against the class's `CONFIG_SCHEMA` ({argument: config.Field, or SUPPLIED for one the code passes
itself}): types and ranges, e.g. `Arch.Head.ArcMargin: scale must be > 0 and <= 1000, got -30`, before
anything is built. Every component of the training registries (heads, necks, losses, optimizers, LR
schedules, samplers, datasets, transforms, metrics) declares one for every argument, and every numeric
one has a range (tests/core/test_schema_ranges.py walks them).

    class ArcMargin(nn.Layer):
        CONFIG_SCHEMA = {"embedding_size": SUPPLIED, "margin": Field(NUM, min_value=0, max_value=1.5), ...}
"""
import importlib
import inspect
import re

from .config import Field
from .errors import ConfigError, did_you_mean

# a CONFIG_SCHEMA entry for a constructor argument that ppshitu's code passes (a config may not set it)
SUPPLIED = "supplied by the code that builds the component"

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve(target):
    """The object a "module:attr" string names (attr may be dotted), importing its module."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    def __init__(self, kind, entries=None):
        self.kind = kind
        self._items = {}      # name -> object, or the "module:attr" string it is imported from
        self._tags = {}       # name -> {tag: value}
        self._providers = []  # [["module:attr" of a function -> {name: entry}, tags, loaded]]
        for name, target in (entries or {}).items():
            self.add(name, target)

    def add(self, name, target, **tags):
        """Register `target` (an object, or a "module:attr" string imported on first lookup) as `name`."""
        if name in self._items:
            raise KeyError(f"{self.kind} '{name}' is registered twice")
        if isinstance(target, str) and not _TARGET.match(target):
            raise ValueError(f"{self.kind} '{name}': {target!r} is not a 'package.module:attribute' string")
        self._items[name] = target
        self._tags[name] = dict(tags)
        return target

    def register(self, name=None, **tags):
        """Decorator: register the decorated object (a class or function of this module) as `name`."""
        def deco(obj):
            self.add(name or obj.__name__, obj, **tags)
            return obj
        return deco

    def add_provider(self, target, **tags):
        """Register a family: "module:attr" of a function returning {name: entry} (each entry an object or
        a "module:attr" string), called on the first lookup that misses (with matching tags)."""
        if not _TARGET.match(target):
            raise ValueError(f"{self.kind} provider: {target!r} is not a 'package.module:attribute' string")
        self._providers.append([target, dict(tags), False])

    def load_providers(self, **tags):
        """Register the families of every provider whose tags agree with `tags` (imports them)."""
        for provider in self._providers:
            target, ptags, loaded = provider
            if loaded or not self._agrees(ptags, tags):
                continue
            provider[2] = True
            for name, entry in resolve(target)().items():
                if name not in self._items:
                    self.add(name, entry, **ptags)

    def remove(self, name):
        """Forget `name` (tests, plugins that unload)."""
        self._items.pop(name)
        self._tags.pop(name)

    def __contains__(self, name):
        return name in self._items

    def tags(self, name):
        return dict(self._tags[name])

    def names(self, **tags):
        """Sorted registered names whose tags agree with `tags` (a tag an entry lacks counts as None).
        Imports nothing (a provider's family appears once it is loaded)."""
        return sorted(n for n in self._items if self._agrees(self._tags[n], tags))

    @staticmethod
    def _agrees(have, want):
        return all(have.get(k) == v for k, v in want.items())

    def get(self, name, where="", **tags):
        """The entry registered as `name` (imported now if it was registered as a string); with `tags`,
        only an entry that has them."""
        known = isinstance(name, str) and name in self._items
        if not known and isinstance(name, str):
            self.load_providers(**tags)
            known = name in self._items
        at = f"{where}: " if where else ""
        if not known or not self._agrees(self._tags[name], tags):
            names = self.names(**tags)
            if known:
                have = ", ".join(f"{k} {self._tags[name].get(k)}" for k in tags)
                want = ", ".join(f"{k} {v}" for k, v in tags.items())
                raise ConfigError(f"{at}{self.kind} '{name}' is registered for {have}, not {want}; "
                                  f"available: {', '.join(names)}")
            raise ConfigError(
                f"{at}unknown {self.kind} '{name}'{did_you_mean(name, names)}; "
                f"available: {', '.join(names)}")
        obj = self._items[name]
        if isinstance(obj, str):
            obj = self._items[name] = resolve(obj)
        return obj

    def build(self, name, kwargs=None, where="", **extra):
        """Instantiate `name` with config `kwargs` (checked) plus code-supplied `extra`."""
        cls = self.get(name, where)
        kwargs = dict(kwargs or {})
        check_kwargs(cls, kwargs, where or f"{self.kind} {name}", supplied=extra)
        kwargs = check_values(cls, kwargs, where or f"{self.kind} {name}")
        return cls(**kwargs, **extra)

    def build_spec(self, spec, where="", **extra):
        """Build from either PaddleClas spelling: {"name": X, **kw} or {X: {kw}}."""
        name, kwargs = split_spec(spec, where)
        return self.build(name, kwargs, where=f"{where}.{name}" if where else name, **extra)

    def build_list(self, specs, where="", **extra):
        """Build a list of {Name: {kw}} items (losses, transforms, metrics)."""
        if specs is None:
            return []
        if not isinstance(specs, list):
            raise ConfigError(f"{where}: expected a list of {{Name: {{...}}}} items, got {type(specs).__name__}")
        return [self.build_spec(s, f"{where}[{i}]", **extra) for i, s in enumerate(specs)]


def split_spec(spec, where=""):
    """{"name": X, **kw} or {X: {kw} | None} -> (X, kw)."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{where}: expected a component like {{name: X, ...}} or {{X: {{...}}}}, got {spec!r}")
    if "name" in spec:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], kwargs
    if len(spec) != 1:
        raise ConfigError(f"{where}: a component needs a 'name' key or exactly one {{Name: args}} entry, "
                          f"got keys {sorted(spec)}")
    (name, kwargs), = spec.items()
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}.{name}: expected a mapping of arguments, got {kwargs!r}")
    return name, kwargs


def check_kwargs(cls, kwargs, where, supplied=()):
    """Reject keys the constructor does not take, and report missing required ones
    (`supplied` names the arguments the calling code passes itself)."""
    target = cls.__init__ if inspect.isclass(cls) else cls
    sig = inspect.signature(target)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(key, names, where + '.')}; "
                              f"valid keys: {', '.join(names)}")
    for p in params:
        if (p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in kwargs and p.name not in supplied):
            raise ConfigError(f"{where}: missing required key '{p.name}'")


def check_values(cls, kwargs, where):
    """`kwargs` with each value checked by the Field its key has in `cls.CONFIG_SCHEMA` (types, ranges;
    a text number converted); a value outside is a ConfigError naming `where` and the key. A key the code
    supplies (SUPPLIED) may not come from a config. Keys the schema does not know are passed as given."""
    schema = getattr(cls, "CONFIG_SCHEMA", None)
    if not schema:
        return kwargs
    out = dict(kwargs)
    for key, value in kwargs.items():
        spec = schema.get(key)
        if spec is SUPPLIED:
            raise ConfigError(f"{where}: '{key}' is set by ppshitu, not by a config; remove it")
        if isinstance(spec, Field):
            out[key] = spec.check(value, key, where, section=kwargs)
    return out
