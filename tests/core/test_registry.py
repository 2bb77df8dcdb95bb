import pytest

from ppshitu.errors import ConfigError
from ppshitu.registry import Registry

LOSSES = Registry("loss")


@LOSSES.register()
class CELoss:
    def __init__(self, weight=1.0, epsilon=None):
        self.weight, self.epsilon = weight, epsilon


@LOSSES.register("TripletLossV2")
class Triplet:
    def __init__(self, margin, weight=1.0, normalize_feature=True):
        self.margin, self.weight = margin, weight


def test_builds_both_paddleclas_spellings():
    a, b = LOSSES.build_list([{"CELoss": {"weight": 0.5, "epsilon": 0.1}}, {"TripletLossV2": {"margin": 0.3}}],
                             where="Loss.Train")
    assert (a.weight, a.epsilon) == (0.5, 0.1) and b.margin == 0.3
    assert LOSSES.build_spec({"name": "CELoss", "weight": 2.0}).weight == 2.0
    assert LOSSES.build_spec({"CELoss": None}).weight == 1.0


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        LOSSES.build_list([{"CELos": {}}], where="Loss.Train")
    msg = str(e.value)
    assert "Loss.Train[0]" in msg and "did you mean CELoss?" in msg and "CELoss, TripletLossV2" in msg


def test_unknown_argument_names_path_and_nearest():
    with pytest.raises(ConfigError, match=r"Loss.Train\[0\].TripletLossV2: unknown key 'margn'.*did you mean .*margin\?"):
        LOSSES.build_list([{"TripletLossV2": {"margn": 0.3}}], where="Loss.Train")


def test_missing_required_argument_is_named():
    with pytest.raises(ConfigError, match="missing required key 'margin'"):
        LOSSES.build("TripletLossV2", {}, where="Loss.Train[1]")
    # unless the code supplies it
    assert LOSSES.build("TripletLossV2", {}, margin=0.1).margin == 0.1


def test_duplicate_registration_is_refused():
    with pytest.raises(KeyError):
        LOSSES.register("CELoss")(object)


def test_malformed_specs():
    with pytest.raises(ConfigError, match="exactly one"):
        LOSSES.build_spec({"CELoss": {}, "TripletLossV2": {}}, where="Loss.Train[0]")
    with pytest.raises(ConfigError, match="expected a list"):
        LOSSES.build_list({"CELoss": {}}, where="Loss.Train")


def _module(tmp_path, monkeypatch, name, text):
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_string_entries_are_imported_on_first_lookup_only(tmp_path, monkeypatch):
    import sys
    mod = _module(tmp_path, monkeypatch, "lazy_kind_mod", "class Lazy:\n    def __init__(self, k=1):\n        self.k = k\n")
    reg = Registry("thing", {"Lazy": f"{mod}:Lazy"})
    reg.add("Also", f"{mod}:Lazy", family="b")
    assert reg.names() == ["Also", "Lazy"] and "Lazy" in reg and mod not in sys.modules  # names import nothing
    with pytest.raises(ConfigError, match=r"unknown thing 'Lazi' \(did you mean Lazy\?\); available: Also, Lazy"):
        reg.get("Lazi", where="X.name")
    assert mod not in sys.modules
    assert reg.build("Lazy", {"k": 3}).k == 3 and mod in sys.modules
    assert reg.get("Lazy") is sys.modules[mod].Lazy
    with pytest.raises(ConfigError, match="unknown key 'kk'"):
        reg.build("Also", {"kk": 1})
    with pytest.raises(ValueError, match="not a 'package.module:attribute'"):
        reg.add("Bad", "no_colon_here")
    reg.remove("Also")
    assert reg.names() == ["Lazy"]


def test_tags_filter_names_and_lookups_without_importing(tmp_path, monkeypatch):
    reg = Registry("backbone")
    reg.add("A", "json:dumps", task="rec")
    reg.add("B", "json:loads", task="det")
    assert reg.names(task="rec") == ["A"] and reg.names() == ["A", "B"] and reg.tags("B") == {"task": "det"}
    assert reg.get("A", task="rec") is __import__("json").dumps
    with pytest.raises(ConfigError, match=r"backbone 'B' is registered for task det, not task rec; available: A"):
        reg.get("B", where="Arch.Backbone.name", task="rec")


def test_a_provider_registers_its_family_when_a_lookup_misses(tmp_path, monkeypatch):
    import sys
    mod = _module(tmp_path, monkeypatch, "lazy_family_mod",
                  "calls = []\ndef family():\n    calls.append(1)\n    return {'F1': 'json:dumps', 'F2': len}\n")
    reg = Registry("backbone")
    reg.add("Own", "json:loads", task="rec")
    reg.add_provider(f"{mod}:family", task="rec")
    assert reg.names() == ["Own"] and mod not in sys.modules
    reg.get("Own", task="rec")                                   # a hit: the provider stays unloaded
    assert mod not in sys.modules
    with pytest.raises(ConfigError, match="unknown backbone 'X'"):
        reg.get("X", task="det")                                 # another task's miss: not this provider
    assert mod not in sys.modules
    assert reg.get("F2", task="rec") is len and reg.names(task="rec") == ["F1", "F2", "Own"]
    with pytest.raises(ConfigError, match="did you mean F1"):
        reg.get("F1x", task="rec")
    assert sys.modules[mod].calls == [1]                         # loaded once
