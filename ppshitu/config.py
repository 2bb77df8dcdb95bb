"""YAML configs with `-o Section.key=value` overrides, validated against a schema.

A schema is a nested dict: key -> Field (a typed leaf), dict (a sub-section with
fixed keys) or OPEN (a component section whose keys are checked later by the
registry that builds it, against the constructor's signature). Unknown keys are
rejected with the file or override they came from and the nearest valid key.
Override values are parsed as YAML scalars/lists; nothing is ever eval()'d.
"""
import copy
import math
import os
import re

import yaml

from .errors import ConfigError, did_you_mean

MISSING = object()


class Field:
    """A typed leaf. `types` is a type or tuple; float accepts int, None needs NoneType.

    `choices`: the valid values, or a callable giving them (a registry's names, read when checked).
    `only` + `why`: a key kept so that PaddleClas / PP-ShiTu configs load, whose other values ppshitu
    does not honour: any value outside `only` is refused, saying why (never silently ignored).
    `min_value` / `max_value`: bounds of a number (`min_exclusive` / `max_exclusive`: the value must be
    above min_value / below max_value). A float is always finite (.nan / .inf are refused). Every numeric
    key declares its range (tests/core/test_schema_ranges.py checks that), the keys of components too
    (a class's CONFIG_SCHEMA, checked by ppshitu/registry.py when the component is built).
    `text_number`: a string is read as a number first (parse_number: YAML reads `1e-4` as text,
    PP-ShiTu configs write `1.0/255.0`), then checked like one.
    `range_by(section) -> (min, max, why)`: bounds that depend on the section's other keys (read from
    the section as written; the static min_value / max_value hold whatever it says).
    `item` + `length`: a list of numbers: each element checked by the Field `item`, `length` of them."""

    def __init__(self, types=object, default=MISSING, choices=None, doc="", only=None, why="",
                 min_value=None, max_value=None, min_exclusive=False, range_by=None, item=None, length=None,
                 max_exclusive=False, text_number=False):
        self.types = types if isinstance(types, tuple) else (types,)
        self.default = default
        self._choices = choices
        self.only = only
        self.why = why
        self.doc = doc or why
        self.min_value, self.max_value, self.min_exclusive = min_value, max_value, min_exclusive
        self.max_exclusive, self.text_number = max_exclusive, text_number
        self.range_by, self.item, self.length = range_by, item, length

    @property
    def choices(self):
        return self._choices() if callable(self._choices) else self._choices

    @property
    def required(self):
        return self.default is MISSING

    def check(self, value, path, source, section=None):
        """The value, checked (`section`: the mapping holding it, for range_by)."""
        if value is None and type(None) in self.types:
            return value
        if self.text_number and isinstance(value, str) and str not in self.types:
            value = parse_number(value, f"{source}: {path}")
        ok = any(_isinstance(value, t) for t in self.types)
        if not ok:
            names = "/".join("null" if t is type(None) else t.__name__ for t in self.types)
            raise ConfigError(f"{source}: {path} must be {names}, got {value!r}")
        choices = self.choices
        if choices is not None and value not in choices:
            raise ConfigError(f"{source}: {path} must be one of {list(choices)}, got {value!r}"
                              f"{did_you_mean(value, choices)}")
        if self.only is not None and value not in self.only:
            raise ConfigError(f"{source}: {path}: {value!r} is not supported: {self.why}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{source}: {path} must be a finite number, got {value!r}")
            self._check_range(value, path, source, section)
        if isinstance(value, list) and (self.item is not None or self.length is not None):
            if self.length is not None and len(value) != self.length:
                raise ConfigError(f"{source}: {path} must be a list of {self.length} values, got {value!r}")
            if self.item is not None:
                value = [self.item.check(v, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return float(value) if float in self.types and isinstance(value, int) and int not in self.types \
            and not isinstance(value, bool) else value

    def _check_range(self, value, path, source, section):
        lo, hi, why = self.min_value, self.max_value, ""
        if self.range_by is not None and isinstance(section, dict):
            lo, hi, why = self.range_by(section)
        why = f" ({why})" if why else ""
        below = lo is not None and (value <= lo if self.min_exclusive else value < lo)
        above = hi is not None and (value >= hi if self.max_exclusive else value > hi)
        if not (below or above):
            return
        low = f"> {lo}" if self.min_exclusive else f">= {lo}"
        high = f"< {hi}" if self.max_exclusive else f"<= {hi}"
        if lo is not None and hi is not None:
            wanted = f"from {lo} to {hi}" if not (self.min_exclusive or self.max_exclusive) else f"{low} and {high}"
        else:
            wanted = low if lo is not None else high
        raise ConfigError(f"{source}: {path} must be {wanted}{why}, got {value!r}")


def _isinstance(value, t):
    if t is object:
        return True
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


OPEN = "open"  # keys checked by the component's builder, not here


class AttrDict(dict):
    """A dict whose keys are also attributes (cfg.Global.epochs), as PaddleClas users expect."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __deepcopy__(self, memo):
        return to_attrdict(copy.deepcopy(to_plain(self), memo))


def to_attrdict(obj):
    if isinstance(obj, dict):
        return AttrDict({k: to_attrdict(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [to_attrdict(v) for v in obj]
    return obj


def to_plain(obj):
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj


_FRACTION = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*/\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


def parse_number(value, where="value"):
    """A number, or a fraction string as PP-ShiTu configs write it ("1.0/255.0"), without eval."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(f"{where}: division by zero in {value!r}")
            return float(m.group(1)) / den
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number or a fraction like 1.0/255.0, got {value!r}")


MAX_YAML_DEPTH = 64  # nesting of lists / mappings, in a file or an -o value (aliases included)
MAX_ALIAS_NODES = 100_000  # what a document with aliases may expand to (a YAML "billion laughs" bomb)


class _YamlLimitError(yaml.YAMLError):
    """A config refused by _ConfigLoader (one line, without the file name: the caller adds it)."""


class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader for configs and -o values: floats read as YAML 1.2 does (`1e-3`, `1E5`, `.5e-2`, which
    YAML 1.1 leaves as text), duplicate mapping keys refused (naming both lines), nesting deeper than
    MAX_YAML_DEPTH refused before Python's recursion limit is met, and aliases refused when recursive or when
    the document would expand past MAX_ALIAS_NODES nodes (the tree is shared by reference, but every walk
    over it -- validation, copies, dumps -- sees it expanded)."""

    yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
                               for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliased = False

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliased = True
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels (line {mark.line + 1}, "
                                      f"column {mark.column + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        if self._aliased:
            _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=False), key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen.setdefault(key, line)
                except TypeError:  # unhashable: SafeConstructor refuses it itself
                    continue
                if first is not None:
                    raise _YamlLimitError(f"duplicate key {key!r} at line {line} (first at line {first}); keep one")
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _check_expansion(root):
    """Refuse a recursive alias, or a document that aliases expand past MAX_ALIAS_NODES / MAX_YAML_DEPTH."""
    sizes, active = {}, set()

    def size(node, depth):
        if depth > MAX_YAML_DEPTH:
            raise _YamlLimitError(f"aliases nest it deeper than {MAX_YAML_DEPTH} levels "
                                  f"(line {node.start_mark.line + 1})")
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _YamlLimitError(f"recursive alias (line {node.start_mark.line + 1}): a value cannot contain "
                                  "itself")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_ALIAS_NODES:
                    raise _YamlLimitError(f"aliases (*name) expand it past {MAX_ALIAS_NODES} values "
                                          f"(line {node.start_mark.line + 1}); write the values out")
            active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _yaml_text(e):
    """A YAML error in one line: what is wrong and where."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        what = "; ".join(str(x) for x in (e.context, e.problem) if x)
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark else what
    return " ".join(str(e).split())


def _safe_load(text):
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except RecursionError:
        raise _YamlLimitError(f"nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None


def load_yaml(path):
    """The mapping in the YAML file `path`: a regular file of at most MAX_CONFIG_BYTES (utils/files.py: a FIFO
    would block the read forever, /dev/zero never end it); every refusal is a ConfigError naming the file.
    Read by _ConfigLoader: YAML 1.2 floats, no duplicate keys, bounded nesting and alias expansion."""
    from .utils.files import MAX_CONFIG_BYTES, read_input_text

    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a directory; give a YAML file")
    try:  # a missing file, a name too long, a symlink loop, no permission, a FIFO, a device ...
        data = _safe_load(read_input_text(path, "config file", MAX_CONFIG_BYTES, ConfigError,
                                          missing=f"config file not found: {path}"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at "
                          f"offset {e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {_yaml_text(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text):
    """'A.B.0.C=value' -> (['A', 'B', 0, 'C'], parsed value). The value is YAML (read like a config file); one
    YAML cannot read (`[a,`, a `!!python/...` tag) is refused, not taken as text: quote it to mean text."""
    if "=" not in text:
        raise ConfigError(f"-o {text}: an override must look like Section.key=value")
    key, raw = text.split("=", 1)
    parts = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if not key.strip() or any(p == "" for p in parts):
        raise ConfigError(f"-o {text}: empty key")
    if any("\udc80" <= ch <= "\udcff" for ch in raw):
        return parts, raw  # a path whose bytes are not UTF-8 (argv's surrogateescape): text, never YAML
    try:
        value = _safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        shown = " ".join(text.split())
        shown = shown if len(shown) <= 120 else shown[:120] + "..."
        raise ConfigError(f"-o {shown}: the value is not valid YAML: {_yaml_text(e)}; "
                          "quote it (key='\"text\"') to give it as text") from None
    return parts, value


def apply_override(cfg, text):
    parts, value = parse_override(text)
    node = cfg
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not isinstance(p, int) or p >= len(node):
                raise ConfigError(f"-o {text}: {'.'.join(map(str, parts[:i]))} is a list of {len(node)}; "
                                  f"'{p}' is not a valid index")
            node = node[p]
        else:
            if not isinstance(node.get(p), (dict, list)):
                node[p] = {}
            node = node[p]
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError(f"-o {text}: '{last}' is not a valid index into a list of {len(node)}")
    node[last] = value
    return parts


def validate(cfg, schema, source="config", path="", override_paths=()):
    """Check `cfg` against `schema`, fill defaults, and return a new plain dict."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{_src(source, path, override_paths)}: {path or 'config'} must be a mapping, "
                          f"got {cfg!r}")
    out = {}
    for key, value in cfg.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(f"{_src(source, sub, override_paths)}: unknown key {sub}"
                              f"{did_you_mean(key, schema, path + '.' if path else '')}")
        spec = schema[key]
        if isinstance(spec, Field):
            out[key] = spec.check(value, sub, _src(source, sub, override_paths), section=cfg)
            continue
        if value is not None and not isinstance(value, dict):  # a section given a single value
            keys = [k for k, s in spec.items() if isinstance(s, Field)][:3] if isinstance(spec, dict) else []
            what = f"keys such as {', '.join(keys)}" if keys else "a component's settings"
            raise ConfigError(f"{_src(source, sub, override_paths)}: {sub} is a section ({what}), not a single "
                              f"value; got {value!r}" + (f" (set a key: -o {sub}.{keys[0]}=...)" if keys else ""))
        if isinstance(spec, dict):
            out[key] = validate(value if value is not None else {}, spec, source, sub, override_paths)
        else:  # OPEN
            out[key] = value
    for key, spec in schema.items():
        if key in out:
            continue
        sub = f"{path}.{key}" if path else str(key)
        if isinstance(spec, Field):
            if spec.required:
                raise ConfigError(f"{source}: missing required key {sub}")
            out[key] = copy.deepcopy(spec.default)
        elif isinstance(spec, dict) and path == "" and _has_required(spec):
            raise ConfigError(f"{source}: missing required section {sub}")
        elif isinstance(spec, dict):
            out[key] = validate({}, spec, source, sub, override_paths)
    return out


def _has_required(schema):
    return any((isinstance(s, Field) and s.required) or (isinstance(s, dict) and _has_required(s))
               for s in schema.values())


def _src(source, path, override_paths):
    """Where `path`'s value came from: the override that set it (the last one applied), else one that
    set a section above it, else one that set a key below it, else the file."""
    for related in (lambda op: path == op, lambda op: path.startswith(op + "."),
                    lambda op: op.startswith(path + ".")):
        for op in reversed(override_paths):
            if related(op):
                return f"-o {op}"
    return source


def load_config(path, overrides=(), schema=None):
    """Load `path`, apply `-o` overrides in order, validate against `schema` (if given)."""
    cfg = load_yaml(path)
    from .utils.outputs import note_config
    note_config(path)  # an input of this run: no output of it is ever written over it
    override_paths = []
    for text in overrides or ():
        parts = apply_override(cfg, text)
        override_paths.append(".".join(map(str, parts)))
    if schema is not None:
        cfg = validate(cfg, schema, source=str(path), override_paths=override_paths)
    return to_attrdict(cfg)


def dump_config(cfg, path):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_plain(cfg), f, sort_keys=False, allow_unicode=True)
