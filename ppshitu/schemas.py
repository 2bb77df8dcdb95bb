"""The config schemas: PaddleClas's sections for training, PP-ShiTu's for inference.

Leaves are typed Fields with defaults; OPEN sections hold components whose keys
are checked by the registry that builds them (against constructor signatures).
Keys PP-ShiTu accepts but ppshitu has no use for are accepted and documented as
such, so that a PaddleClas config runs here unchanged.
"""
from .config import OPEN, Field

NONE = type(None)


def _runtimes():
    from .infer.runtime import runtime_names
    return runtime_names()


def _gallery_backends():
    from .gallery.base import STORES  # the registry's names: no store module (nor pymilvus) is imported
    return STORES.names()


def _index_methods():
    from .gallery.indexes import AUTO, INDEX_METHODS  # the registry decides, read when a config is checked
    return INDEX_METHODS.names() + [AUTO]  # auto: Flat, IVFSQ8 or IVFPQFS by size (indexes.auto_method)
STR_OR_NONE = (str, NONE)
NUM = (int, float)
# The most threads (or worker processes) any key may ask for: Global.cpu_num_threads, Global.num_threads,
# IndexProcess.num_workers, DataLoader.*.loader.num_workers, deploy/serve.py --workers. Far above any machine's
# cores, far below what breaks: `cpu_num_threads=100000` made Paddle's C++ abort the process (SIGABRT).
MAX_THREADS = 1024


def _image_shape(default):
    return Field(list, default, length=3, item=Field(int, min_value=1, max_value=16384),
                 doc="[channels, height, width], each from 1 to 16384")


def _score_range(index_process):
    """IndexProcess.score_thres's bounds: a cosine for dist_type IP, a squared distance of unit vectors
    for L2; with score neighbourhood a difference of those, higher is better (ppshitu/gallery/scores.py)."""
    if index_process.get("score") == "neighbourhood":
        return 0, 4, "score neighbourhood: top-1 minus the mean of matches 2-10 (higher is better)"
    if (index_process.get("dist_type") or "IP") == "L2":
        return 0, 4, "dist_type L2: a squared distance between L2-normalized embeddings"
    return -1, 1, "dist_type IP: a cosine similarity"

# ---------------------------------------------------------------- training
TRAIN_GLOBAL = {
    "checkpoints": Field(STR_OR_NONE, None, doc="checkpoint prefix to resume from, e.g. output/RecModel/epoch_5"),
    "pretrained_model": Field(STR_OR_NONE, None, doc="weights (.pdparams prefix or path) to start from / evaluate"),
    "output_dir": Field(str, "./output/"),
    "device": Field(str, "cpu", choices=("cpu", "gpu")),
    "save_interval": Field(int, 1, min_value=0, doc="save epoch_N every N epochs (0: only latest and best_model)"),
    "eval_during_train": Field(bool, True),
    "eval_interval": Field(int, 1, min_value=1),
    "start_eval_epoch": Field(int, 0, min_value=0),
    "epochs": Field(int, 10, min_value=1),
    "print_batch_step": Field(int, 10, min_value=1),
    "use_visualdl": Field(bool, False, only=(False,), why="VisualDL logging is not built in; the log and each "
                          "checkpoint's .pdstates history hold every figure"),
    "image_shape": _image_shape([3, 224, 224]),
    "image_size_schedule": Field((list, NONE), None, item=Field(list, length=2, item=Field(int, min_value=1,
                                 max_value=16384)), doc="[[epochs, size], ...]: recognition trains its first "
                                 "epochs at these sizes (px, square), in order, then at the training pipeline's "
                                 "own; evaluation and export stay at image_shape (ppshitu/rec/size_schedule.py)"),
    "save_inference_dir": Field(str, "./inference"),
    "eval_mode": Field(STR_OR_NONE, None, choices=("retrieval", "detection", None),
                       doc="must agree with Arch.name (RecModel: retrieval, PicoDet: detection)"),
    "seed": Field((int, NONE), 42, min_value=0, max_value=2 ** 32 - 1),
    "to_static": Field(bool, False, only=(False,), why="training runs in dygraph; export traces the model"),
    "use_dali": Field(bool, False, only=(False,), why="DALI data loading is not built in"),
    "num_threads": Field((int, NONE), None, min_value=1, max_value=MAX_THREADS,
                         doc="CPU threads for training (default: all cores); at most MAX_THREADS (1024)"),
    "max_iters_per_epoch": Field((int, NONE), None, min_value=1, doc="cut each epoch short (smoke tests, quick "
                                 "demos)"),
    "export_format": Field(str, "pir", choices=("pir", "legacy"), doc="inference.json (pir) or inference.pdmodel (legacy)"),
    "export_openvino": Field(bool, False, doc="also write an OpenVINO IR (inference.xml/.bin) beside the Paddle "
                             "files, named in inference.yml: the openvino backend then loads it without converting"),
    "feature_normalize": Field(bool, True, only=(True,), why="embeddings are always L2-normalized (gallery "
                               "scores are cosines, and the shipped score_thres assumes them)"),
    "re_ranking": Field(bool, False, only=(False,), why="k-reciprocal re-ranking is not built in"),
}

TRAIN_SCHEMA = {
    "Global": TRAIN_GLOBAL,
    "Arch": OPEN,
    "Loss": {"Train": Field((list, NONE), None),
             "Eval": Field((list, NONE), None, only=(None, []), why="evaluation scores retrieval (recall@k, mAP) "
                           "or COCO AP, never a loss (PaddleClas ignores it for retrieval too): delete Loss.Eval")},
    "Optimizer": OPEN,
    "DataLoader": OPEN,
    "Metric": {"Train": Field((list, NONE), None, doc="[{TopkAcc: {topk: [1, 5]}}]: the head's training accuracy, "
                              "logged per step"),
               "Eval": Field((list, NONE), None)},
    "AMP": {
        "use_amp": Field(bool, False),
        "scale_loss": Field(NUM, 65536.0, min_value=0, min_exclusive=True),
        "use_dynamic_loss_scaling": Field(bool, True),
        "use_promote": Field(bool, False),
        "level": Field(str, "O1", choices=("O1", "O2")),
    },
    "EMA": OPEN,
    "Infer": OPEN,
}

# --------------------------------------------------------------- inference
INFER_GLOBAL = {
    "infer_imgs": Field(STR_OR_NONE, None, doc="an image, a directory or a list file"),
    "det_inference_model_dir": Field(STR_OR_NONE, None, doc="empty: recognise the whole image only"),
    "rec_inference_model_dir": Field(STR_OR_NONE, None),
    "inference_model_dir": Field(STR_OR_NONE, None, doc="PaddleClas predict_rec/predict_det key"),
    "rec_nms_thresold": Field(NUM, 0.05, min_value=0, max_value=1,
                              doc="IoU above which same-label boxes are merged (PP-ShiTu's spelling)"),
    "batch_size": Field(int, 1, min_value=1),
    "image_shape": _image_shape([3, 640, 640]),
    "threshold": Field(NUM, 0.2, min_value=0, max_value=1, doc="detector score threshold"),
    "max_det_results": Field(int, 5, min_value=1),
    "label_list": Field((list, NONE), ["foreground"]),
    "labe_list": Field((list, NONE), None, doc="PaddleClas's own misspelling of label_list (its older "
                       "deploy/configs/inference_general.yaml): accepted so that config runs unchanged, and "
                       "ignored like label_list (the detector's labels come from its inference.yml)"),
    "inference_backend": Field(str, "paddle", choices=lambda: _runtimes(), doc="the inference runtime"),
    "precision": Field(STR_OR_NONE, None, choices=("auto", "fp32", "bf16", "int8", None),
                       doc="auto | fp32 | bf16 | int8 (unset: auto, or bf16 with enable_mkldnn_bfloat16). auto "
                           "matters on openvino only (paddle: fp32): bf16 where the CPU computes it natively, "
                           "else the int8 model beside the fp32 one (<dir>_int8) that passed its agreement "
                           "check, else fp32; printed once with its reason (ppshitu/infer/precision.py)"),
    "bf16_f32_layers": Field((int, NONE), None, min_value=0,
                             doc="bf16 on openvino: the first N convolution/matmul layers from the input stay "
                                 "f32 (none: the runtime's measured default; 0: bf16 everywhere)"),
    "use_gpu": Field(bool, False),
    "enable_mkldnn": Field(bool, True),
    "enable_mkldnn_bfloat16": Field(bool, False),
    "cpu_num_threads": Field(int, 2, min_value=1, max_value=MAX_THREADS,
                             doc="threads of each predictor, from 1 to MAX_THREADS (1024)"),
    "enable_benchmark": Field(bool, False, doc="predict_system prints its images/s and ms/image at the end"),
    "use_fp16": Field(bool, False, only=(False,), why="half precision needs TensorRT, which no ppshitu runtime "
                      "uses; on CPU, enable_mkldnn_bfloat16 gives reduced precision"),
    "ir_optim": Field(bool, True),
    "use_tensorrt": Field(bool, False, only=(False,), why="no ppshitu runtime uses TensorRT"),
    "gpu_mem": Field(int, 8000, min_value=1, doc="MB of GPU memory Paddle Inference starts with (use_gpu)"),
    "enable_profile": Field(bool, False, doc="Paddle Inference's operator profile, printed at exit"),
    "use_onnx": Field(bool, False, only=(False,), why="models run under Paddle Inference"),
    "use_xpu": Field(bool, False, only=(False,), why="CPU and CUDA GPUs only"),
    "use_npu": Field(bool, False, only=(False,), why="CPU and CUDA GPUs only"),
    "use_mlu": Field(bool, False, only=(False,), why="CPU and CUDA GPUs only"),
    "save_log_path": Field(STR_OR_NONE, None, only=(None,), why="logs go to stderr; redirect them"),
    "benchmark": Field(bool, False, only=(False,), why="speed is measured by bench/run_all.py"),
    "output_dir": Field(str, "./output/"),
    "save_visual": Field(bool, True, doc="draw labelled boxes into output_dir"),
    "font_path": Field(STR_OR_NONE, None, doc="a TTF font for labels; default: one found on the system"),
    # limits on what a reader accepts (ppshitu/utils/image.py)
    "max_image_pixels": Field((int, NONE), None, min_value=1,
                              doc="refuse an image whose header declares more pixels, before decoding it; "
                                  "null: $PPSHITU_MAX_IMAGE_PIXELS, else 40000000 (40 MP)"),
    "reduced_decode": Field(bool, True, doc="whole-image embeddings (a gallery without use_det, the library "
                            "tools) decode a JPEG at 1/2, 1/4 or 1/8 scale when its shorter side stays at least the "
                            "model's input (libjpeg's DCT scaling): the decode no longer costs as much as the model; "
                            "recall kept (bench/results/bench_runtimes.md)"),
    "min_image_side": Field(int, 8, min_value=1, doc="refuse images with a shorter side (px) as too small to "
                            "recognise, in queries and gallery images"),
}

INDEX_PROCESS = {
    "backend": Field(str, "faiss", choices=lambda: _gallery_backends(),
                     doc="faiss (index_dir: a directory) | milvus (uri: a Milvus Lite file or http://host:19530)"),
    "uri": Field(STR_OR_NONE, None, doc="milvus: a local .db file (Milvus Lite) or http://host:19530; token from "
                                        "$PPSHITU_MILVUS_TOKEN"),
    "collection": Field(STR_OR_NONE, None, doc="milvus: the collection name (default ppshitu_gallery; or give it "
                                               "as uri#name)"),
    "index_method": Field(str, "HNSW32", choices=lambda: _index_methods()),
    "image_root": Field(STR_OR_NONE, None, doc="the folder data_file's paths are relative to; a gallery item's "
                        "key is its path relative to it, normalised (./a.jpg, x//a.jpg: one key)"),
    "allow_outside_root": Field(bool, False, doc="index data_file paths outside image_root (absolute paths "
                                "elsewhere, ../): refused by default, since a list that names them is usually a "
                                "mistake (wrong image_root, a list from another machine)"),
    "index_dir": Field(STR_OR_NONE, None, doc="faiss: the gallery directory"),
    "data_file": Field(STR_OR_NONE, None, doc="new / append / remove_by path: `relpath<delimiter>label` lines "
                       "(one label per image); remove_by label: one label per whole line"),
    "index_operation": Field(str, "new", choices=("new", "append", "remove", "compact")),
    "remove_by": Field(str, "path", choices=("path", "label"),
                       doc="remove: the data_file's images (path: its `relpath<delimiter>label` lines) or every "
                           "image of its labels (label: each whole line is one label, a tab in it included)"),
    "delimiter": Field(str, "\t"),
    "dist_type": Field(str, "IP", choices=("IP", "L2")),
    "embedding_size": Field((int, NONE), None, min_value=1,
                            doc="default: the model's (inference.yml, or probed); a different value is refused"),
    "batch_size": Field(int, 32, min_value=1),
    "return_k": Field(int, 5, min_value=1, doc="gallery matches per crop"),
    "score_thres": Field((int, float, NONE), None, min_value=-1, max_value=4, range_by=_score_range,
                         doc="IP: cosine >= this is a match (-1 to 1); L2: squared distance <= this (0 to 4: "
                             "embeddings are L2-normalized); null: the gallery's calibrated value "
                             "(tools/calibrate_gallery.py), else 0.5"),
    "score": Field(str, "cosine", choices=("cosine", "neighbourhood"), doc="what score_thres acts on: the top-1 "
                   "match's score, or neighbourhood: top-1 minus the mean of the query's matches 2-10 (calibrated "
                   "beside the cosine; ppshitu/gallery/scores.py, bench/results/bench_scene_scores.md)"),
    "calibrate": Field(bool, False, doc="build_gallery: calibrate score_thres on the gallery (for target_precision) "
                       "after new, and after an update that leaves the calibration stale or absent"),
    "target_precision": Field(NUM, 0.95, min_value=0, max_value=0.999, min_exclusive=True,
                              doc="the precision a calibrated score_thres is chosen for (above 0, below 1)"),
    "calibration_queries": Field(str, "gallery", choices=("gallery", "crops"), doc="what calibration queries: "
                                 "the stored vectors (gallery), or the items pasted on photographs and cropped, "
                                 "embedded by the rec model (crops: ppshitu/gallery/crop_queries.py)"),
    "min_crop_std": Field(NUM, 1.0, min_value=0, max_value=255, doc="a crop whose per-channel pixel std (0-255, "
                          "32x32 thumbnail) is below this has no detail: 'unknown' in queries, skipped in galleries; "
                          "0: off"),
    "hamming_radius": Field(int, 100, min_value=0, doc="accepted for PaddleClas compatibility (binary indexes are "
                            "not built)"),
    "binary_index": Field(bool, False, only=(False,), why="binary (hamming) indexes are not built; use IP or L2"),
    # each index method's own parameters (the method's constructor checks which apply)
    "ef_search": Field((int, NONE), None, min_value=1, doc="HNSW efSearch; null: the gallery's own, tuned on its "
                       "vectors at build (recall@1 >= tune_recall vs exact, gallery/search_tuning.py); a value "
                       "overrides it"),
    "nprobe": Field((int, NONE), None, min_value=1, doc="IVF nprobe; null: the gallery's own, tuned on its vectors "
                    "at build (recall@1 >= tune_recall vs exact); a value overrides it"),
    "tune_recall": Field(NUM, 0.98, min_value=0, max_value=1, min_exclusive=True, max_exclusive=True,
                         doc="the recall@1 vs exact search that the tuned ef_search / nprobe reaches on the gallery's "
                         "own vectors (above 0, below 1; kept in the manifest, an append with another value "
                         "re-tunes; faiss galleries)"),
    "nlist": Field((int, NONE), None, min_value=1, doc="IVF lists (default: from the data size)"),
    "pq_m": Field((int, NONE), None, min_value=1, doc="IVFPQ sub-quantizers (must divide embedding_size)"),
    "rerank_factor": Field((int, NONE), None, min_value=1, doc="IVFPQ, IVFSQ8: candidates re-scored exactly, per result; IVFPQFS: the re-scored pool (default 256)"),
    "use_det": Field(bool, False, doc="index the detector's main object instead of the whole image"),
    "query_expansion": Field(int, 0, min_value=0, max_value=100, doc="alpha-QE at search time: each query "
                             "averaged with its N nearest gallery vectors (weight cosine**qe_alpha), then "
                             "searched; 0: off (gallery/query_expansion.py, bench/results/bench_query_options.md)"),
    "qe_alpha": Field(NUM, 3.0, min_value=0, max_value=100, doc="query_expansion's weight exponent"),
    "rerank": Field(str, "none", choices=("none", "csls"), doc="csls: the top 10 candidates re-ordered by 2 x "
                    "score - their mean score to their 5 nearest gallery items (hubs demoted); the scores answered "
                    "stay the plain ones (gallery/query_expansion.py, bench/results/bench_query_options.md)"),
    "num_workers": Field(int, 2, min_value=1, max_value=MAX_THREADS,
                         doc="image-decoding threads while the model runs (at most MAX_THREADS, 1024)"),
}

INFER_SCHEMA = {
    "Global": INFER_GLOBAL,
    "DetPreProcess": {"transform_ops": Field((list, NONE), None)},
    "DetPostProcess": OPEN,
    "RecPreProcess": {"transform_ops": Field((list, NONE), None),
                      "flip_average": Field(bool, False, doc="embed each image and its mirror image and average "
                                            "(gallery and queries: the gallery's fingerprint records it; twice the "
                                            "model time; bench/results/bench_query_options.md)")},
    "RecPostProcess": OPEN,
    "IndexProcess": INDEX_PROCESS,
}
