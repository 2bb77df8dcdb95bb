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
