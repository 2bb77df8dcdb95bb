import textwrap

import pytest

from ppshitu.config import Field, OPEN, load_config, parse_number, validate
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA, TRAIN_SCHEMA

TRAIN_YAML = """
Global:
  epochs: 3
  output_dir: ./out
Arch:
  name: RecModel
Loss:
  Train:
    - CELoss: {weight: 1.0}
DataLoader:
  Train:
    sampler: {batch_size: 8}
    dataset:
      transform_ops:
        - ResizeImage: {size: 64}
"""


@pytest.fixture
def train_yaml(tmp_path):
    p = tmp_path / "train.yaml"
    p.write_text(TRAIN_YAML)
    return p


def test_overrides_parse_yaml_scalars_and_lists(train_yaml):
    cfg = load_config(train_yaml, ["Global.epochs=7", "Global.image_shape=[3, 64, 64]",
                                   "Global.pretrained_model=null", "Global.device=cpu",
                                   "DataLoader.Train.sampler.batch_size=16",
                                   "DataLoader.Train.dataset.transform_ops.0.ResizeImage.size=32"],
                      TRAIN_SCHEMA)
    assert cfg.Global.epochs == 7
    assert cfg.Global.image_shape == [3, 64, 64]
    assert cfg.Global.pretrained_model is None
    assert cfg.DataLoader.Train.sampler.batch_size == 16
    assert cfg.DataLoader.Train.dataset.transform_ops[0]["ResizeImage"]["size"] == 32
    # defaults are filled in from the schema
    assert cfg.Global.eval_interval == 1 and cfg.Global.checkpoints is None


def test_typo_in_override_names_the_nearest_key(train_yaml):
    with pytest.raises(ConfigError, match=r"-o Global\.epochss.*did you mean Global\.epochs\?"):
        load_config(train_yaml, ["Global.epochss=3"], TRAIN_SCHEMA)


def test_typo_in_file_names_the_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("Global:\n  eval_intervall: 2\nArch: {name: RecModel}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, [], TRAIN_SCHEMA)
    msg = str(e.value)
    assert str(p) in msg and "Global.eval_intervall" in msg and "did you mean Global.eval_interval?" in msg


def test_unknown_section_suggests_the_section(train_yaml):
    with pytest.raises(ConfigError, match="did you mean Optimizer"):
        load_config(train_yaml, ["Optimiser.name=Momentum"], TRAIN_SCHEMA)


def test_wrong_type_and_bad_choice_are_rejected(train_yaml):
    with pytest.raises(ConfigError, match="Global.epochs must be int, got 'ten'"):
        load_config(train_yaml, ["Global.epochs=ten"], TRAIN_SCHEMA)
    with pytest.raises(ConfigError, match="Global.device must be one of"):
        load_config(train_yaml, ["Global.device=tpu"], TRAIN_SCHEMA)


def test_missing_required_key_is_reported(tmp_path):
    schema = {"Global": {"rec_dir": Field(str), "k": Field(int, 5)}}
    with pytest.raises(ConfigError, match="missing required key Global.rec_dir"):
        validate({"Global": {"k": 1}}, schema, source="x.yaml")
    assert validate({"Global": {"rec_dir": "m"}}, schema)["Global"] == {"rec_dir": "m", "k": 5}


def test_open_sections_are_left_to_their_builders():
    schema = {"Arch": OPEN}
    assert validate({"Arch": {"anything": 1}}, schema) == {"Arch": {"anything": 1}}


def test_float_fields_accept_ints_and_bools_are_not_ints():
    schema = {"G": {"t": Field(float, 0.5), "n": Field(int, 1)}}
    assert validate({"G": {"t": 1}}, schema)["G"]["t"] == 1.0
    with pytest.raises(ConfigError):
        validate({"G": {"n": True}}, schema)


def test_invalid_yaml_and_missing_file_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("Global: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(p)


def test_malformed_override(train_yaml):
    with pytest.raises(ConfigError, match="must look like Section.key=value"):
        load_config(train_yaml, ["Global.epochs"], TRAIN_SCHEMA)


@pytest.mark.parametrize("text,value", [("1.0/255.0", 1 / 255), ("0.00392157", 0.00392157), (2, 2.0),
                                        (" 1 / 4 ", 0.25), ("1e-3", 0.001)])
def test_parse_number_reads_fractions_without_eval(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["__import__('os')", "1/0", "2**8", "abc", None])
def test_parse_number_refuses_expressions(text):
    with pytest.raises(ConfigError):
        parse_number(text, "RecPreProcess.NormalizeImage.scale")


def test_ppshitu_reference_inference_config_loads_unchanged(tmp_path):
    # PaddleClas's own deploy/configs/inference_general.yaml, verbatim in the parts that matter
    p = tmp_path / "inference_general.yaml"
    p.write_text(textwrap.dedent("""\
        Global:
          infer_imgs: "./drink_dataset_v2.0/test_images/100.jpeg"
          det_inference_model_dir: "./models/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer"
          rec_inference_model_dir: "./models/general_PPLCNetV2_base_pretrained_v1.0_infer"
          rec_nms_thresold: 0.05
          batch_size: 1
          image_shape: [3, 640, 640]
          threshold: 0.2
          max_det_results: 5
          label_list:
            - foreground
          use_gpu: True
          enable_mkldnn: True
          cpu_num_threads: 10
          enable_benchmark: True
          use_fp16: False
          ir_optim: True
          use_tensorrt: False
          gpu_mem: 8000
          enable_profile: False
        DetPreProcess:
          transform_ops:
            - DetResize: {interp: 2, keep_ratio: false, target_size: [640, 640]}
            - DetNormalizeImage: {is_scale: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
            - DetPermute: {}
        DetPostProcess: {}
        RecPreProcess:
          transform_ops:
            - ResizeImage: {size: [224, 224], return_numpy: False, interpolation: bilinear, backend: cv2}
            - NormalizeImage: {scale: 1.0/255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], order: hwc}
            - ToCHWImage:
        RecPostProcess: null
        IndexProcess:
          index_method: "HNSW32"
          image_root: "./drink_dataset_v2.0/gallery/"
          index_dir: "./drink_dataset_v2.0/index"
          data_file: "./drink_dataset_v2.0/gallery/drink_label.txt"
          index_operation: "new"
          delimiter: "\\t"
          dist_type: "IP"
          embedding_size: 512
          batch_size: 32
          return_k: 5
          score_thres: 0.5
        """))
    cfg = load_config(p, ["Global.use_gpu=False"], INFER_SCHEMA)
    assert cfg.Global.use_gpu is False and cfg.IndexProcess.delimiter == "\t"
    assert parse_number(cfg.RecPreProcess.transform_ops[1]["NormalizeImage"]["scale"]) == pytest.approx(1 / 255)
