"""One explicit registry per kind of component, so a config name maps to a class
without eval() or star imports, and a typo fails at build time, naming the choices.

    LOSSES = Registry("loss")

    @LOSSES.register()
    class CELoss: ...

    LOSSES.build("CELoss", {"epsilon": 0.1}, where="Loss.Train[0]")

Constructor arguments are checked against the signature, so an unknown or
misspelled key is reported with its config path and the nearest valid name.
"""
import inspect

from .errors import ConfigError, did_you_mean


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def register(self, name=None):
        def deco(obj):
            key = name or obj.__name__
            if key in self._items:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj
        return deco

    def __contains__(self, name):
        return name in self._items

    def names(self):
        return sorted(self._items)

    def get(self, name, where=""):
        if name not in self._items:
            at = f"{where}: " if where else ""
            raise ConfigError(
                f"{at}unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; "
                f"available: {', '.join(self.names())}")
        return self._items[name]

    def build(self, name, kwargs=None, where="", **extra):
        """Instantiate `name` with config `kwargs` (checked) plus code-supplied `extra`."""
        cls = self.get(name, where)
        kwargs = dict(kwargs or {})
        check_kwargs(cls, kwargs, where or f"{self.kind} {name}", supplied=extra)
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
