"""Gallery building from images: the pipeline behind tools/build_gallery.py, the demo
and the benchmarks.

Images are embedded by ppshitu.embedder.Embedder (decoded and preprocessed in worker threads
while the model runs the previous batch; the main object with IndexProcess.use_det); unreadable
images are skipped with a warning each and a count at the end. On `append`, images already in the gallery are skipped before any
decoding, so a re-run costs nothing and adds nothing.

Gallery keys: an image's key (its `path` in the gallery) is its path relative to
IndexProcess.image_root, normalised (os.path.normpath, '/'-separated): `images/a.jpg`,
`./images/a.jpg`, `images//a.jpg` and `<image_root>/images/a.jpg` are one key, `images/a.jpg`,
for new, append (and --shard) and remove alike, on every store (Milvus keys by its hash). A path
outside image_root (`../x.jpg`, an absolute path elsewhere) is refused unless
IndexProcess.allow_outside_root; allowed, its key is its normalised path as listed. One path
listed twice with one label is one item; with two labels it is an error naming both and their
lines. Galleries written before keys were normalised keep working: append and remove compare
the stored keys normalised (`stored_keys`), and remove takes every stored spelling of a key.

Remove lists: `remove_by: path` reads `path<delimiter>label` lines (the label is not used);
`remove_by: label` takes each whole line as one label (a tab in it is part of the label), and
labels the gallery does not hold are reported.
"""
import logging
import os

from ..embedder import Embedder
from ..errors import ConfigError
from ..utils.lists import read_list_lines
from .errors import GalleryError
from .base import (check_creatable, create_gallery, gallery_location, in_shard, open_gallery,
                   open_or_create_gallery, parse_shard, tuning_options)
from .model_id import model_fingerprint
from ..utils.text import label_problem, nfc

log = logging.getLogger("ppshitu.gallery")
OPERATIONS = ("new", "append", "remove", "compact")


def _read_lines(data_file):
    """[(line number, line)] of a list file's entries: utils/lists.py's rules, as every list reader (UTF-8, a
    byte-order mark ignored, blank and `#` comment lines left out, a NUL byte refused; regular files only)."""
    return read_list_lines(data_file, ConfigError, "IndexProcess.data_file: ",
                           missing=f"IndexProcess.data_file: {data_file} does not exist")


def read_data_file(data_file, delimiter="\t", line_numbers=False):
    """[(relpath, label)] from `relpath<delimiter>label` lines, as written (see gallery_entries for
    the keys); the label is everything after the first delimiter, so it may contain spaces.
    `line_numbers`: [(relpath, label, line number)]."""
    if not isinstance(delimiter, str) or not delimiter or "\n" in delimiter or "\r" in delimiter:
        raise ConfigError(f"IndexProcess.delimiter {delimiter!r}: must be a non-empty string within one line "
                          f"(what separates an image's path from its label in {data_file}, e.g. '\\t')")
    entries = []
    for no, line in _read_lines(data_file):
        parts = line.split(delimiter, 1)
        if len(parts) == 2 and parts[0].strip() and parts[1].strip():  # (labels NFC: one spelling per class)
            label = nfc(parts[1].strip())
            problem = label_problem(label, allow="\t")  # a tab after the first delimiter: part of the label
            if problem:
                shown = repr(label[:60]) + ("..." if len(label) > 60 else "")  # (a 10 MB one is not printed)
                raise ConfigError(f"{data_file}:{no}: label {shown}: {problem}")
            entries.append((parts[0].strip(), label) + ((no,) if line_numbers else ()))
        else:
            raise ConfigError(f"{data_file}:{no}: expected 'relpath{delimiter!r}label', got {line!r} "
                              f"(check IndexProcess.delimiter; remove_by: label takes one label per line)")
    if not entries:
        raise ConfigError(f"IndexProcess.data_file: {data_file} lists no images")
    return entries


def read_labels(data_file):
    """The labels of a `remove_by: label` list: each whole line (stripped) is one label, a tab in it
    included; blank and `#` comment lines are skipped (utils/lists.py)."""
    labels = list(dict.fromkeys(nfc(line) for _, line in _read_lines(data_file)))
    if not labels:
        raise ConfigError(f"IndexProcess.data_file: {data_file} lists no labels")
    return labels


def gallery_key(path, image_root=None):
    """(key, inside): a listed image path as a gallery key (module docstring) and whether it lies
    inside `image_root` (lexically: normpath, no symbolic link followed). Relative paths are relative
    to image_root; an absolute one inside it becomes relative. Keys are NFC (`te\u0301al.jpg` and
    `t\u00e9al.jpg` are one key); the file is read as it was listed (gallery_entries)."""
    p = os.path.normpath(nfc(os.fspath(path)))
    if os.path.isabs(p):
        if not image_root:
            return p, False
        try:
            rel = os.path.relpath(p, nfc(os.path.abspath(image_root)))
        except ValueError:  # another drive (Windows)
            return p, False
        if _escapes(rel):
            return p, False
        p = rel
    return p.replace(os.sep, "/"), not _escapes(p)


def _escapes(rel):
    return rel == os.pardir or rel.startswith(os.pardir + os.sep)


def gallery_entries(data_file, delimiter="\t", image_root=None, allow_outside_root=False, check_labels=True):
    """[(key, label, the path as listed)] of a gallery list, one per image: paths become gallery keys
    (gallery_key; the file is read at the path as listed), a key listed again is dropped; `check_labels`: one listed with another label is a ConfigError naming the
    path, both labels and their lines; `allow_outside_root` False: paths outside image_root are a
    ConfigError naming them."""
    out, conflicts, outside = {}, [], []
    for path, label, no in read_data_file(data_file, delimiter, line_numbers=True):
        key, inside = gallery_key(path, image_root)
        if not inside and not allow_outside_root:
            outside.append(f"{data_file}:{no}: {path!r}")
            continue
        if key not in out:
            out[key] = (label, no, path)
        elif check_labels and out[key][0] != label:
            first, at, spelt = out[key]
            conflicts.append(f"{key!r} is {first!r} on {data_file}:{at}" + (f" (as {spelt!r})" if spelt != key else "")
                             + f" and {label!r} on {data_file}:{no}" + (f" (as {path!r})" if path != key else ""))
    if check_labels:  # (not for a remove list: every stored spelling of a listed path goes)
        conflicts += _one_item_per_file(out, image_root, data_file)
    if conflicts:
        raise ConfigError(f"IndexProcess.data_file: {len(conflicts)} image(s) listed with two labels (an image has "
                          f"one label; keep one line each): " + "; ".join(conflicts[:5])
                          + ("; ..." if len(conflicts) > 5 else ""))
    if outside:
        raise ConfigError(f"IndexProcess.data_file: {len(outside)} path(s) outside IndexProcess.image_root "
                          f"{image_root}: " + "; ".join(outside[:5]) + ("; ..." if len(outside) > 5 else "")
                          + "; move them under image_root, or set IndexProcess.allow_outside_root: true "
                          "to index them where they are")
    return [(key, label, spelt) for key, (label, _, spelt) in out.items()]


def _one_item_per_file(out, image_root, data_file):
    """One file listed under two spellings that no normalising can merge -- through a symbolic link
    (`link/a.jpg`, link -> images), or a hard link -- is one item: the later spellings are dropped from `out`
    ({key: (label, line, path as listed)}) with a warning naming them; with another label, the conflict
    sentences (gallery_entries raises them). Files are told apart by (device, inode); missing ones are left
    to the reader (which reports them)."""
    seen, dropped, conflicts = {}, [], []
    for key, (label, no, spelt) in list(out.items()):
        try:
            st = os.stat(spelt if os.path.isabs(spelt) or not image_root else os.path.join(image_root, spelt))
        except (OSError, ValueError):
            continue
        first = seen.setdefault((st.st_dev, st.st_ino), key)
        if first == key:
            continue
        del out[key]
        if out[first][0] != label:
            conflicts.append(f"{key!r} on {data_file}:{no} is the file {first!r} (line {out[first][1]}) under "
                             f"another label: {label!r}, not {out[first][0]!r}")
        else:
            dropped.append(f"{key!r} (line {no}) is {first!r}")
    if dropped:
        log.warning("%s: %d image(s) listed again under another path to the same file (a symbolic or hard link), "
                    "indexed once: %s%s", data_file, len(dropped), "; ".join(dropped[:5]),
                    "; ..." if len(dropped) > 5 else "")
    return conflicts


def _stored_as_another_spelling(gallery, entries, image_root):
    """{key: [stored path]} of the new `entries` whose file the gallery already holds under another spelling (a
    path through a symbolic link, a hard link: _one_item_per_file's rule, against the stored items). Only stored
    items with the entry's file name are looked at (a link spells the folders differently, the name alike), so
    an append never stats the whole gallery."""
    by_name = {}
    for key, _, spelt in entries:
        by_name.setdefault(os.path.basename(key), []).append((key, spelt))
    if not by_name:
        return {}

    def ident(path):
        try:
            st = os.stat(path if os.path.isabs(path) else os.path.join(image_root, path))
            return st.st_dev, st.st_ino
        except (OSError, ValueError):
            return None
    stored = {}
    for r in gallery.records():
        path = r.get("path")
        if path and os.path.basename(path) in by_name:
            stored.setdefault(ident(path), []).append(path)
    stored.pop(None, None)
    found = {}
    for key, spelt in (e for group in by_name.values() for e in group):
        same = stored.get(ident(spelt))
        if same:
            found[key] = same
    if found:
        log.warning("%d listed image(s) already in the gallery under another path to the same file (a symbolic or "
                    "hard link), not added again: %s", len(found),
                    "; ".join(f"{k!r} is {v[0]!r}" for k, v in list(found.items())[:5]))
    return found


def stored_keys(gallery, keys, image_root=None):
    """{key: [the gallery's paths for it]} of those of `keys` the gallery holds: the key itself, and
    any spelling stored before keys were normalised (`./a.jpg`, `x//a.jpg`, an absolute path inside
    image_root), found by normalising every stored path (one pass over the records)."""
    keys = list(keys)
    found = {p: [p] for p in gallery.existing_paths(keys)}
    wanted = set(keys)
    for r in gallery.records():
        p = r.get("path")
        if p is None:
            continue
        key = gallery_key(p, image_root)[0]
        if key != p and key in wanted:
            found.setdefault(key, []).append(p)
    return found


def index_params(ip):
    """The IndexProcess keys that tune the FAISS index (None: the measured defaults)."""
    return {k: ip[k] for k in ("ef_search", "nprobe", "nlist") if ip.get(k) is not None}


def build_gallery(cfg, rec=None, det=None, shard=None):
    """Run IndexProcess.index_operation on the gallery IndexProcess names (`index_dir`; backend milvus:
    `uri` + `collection`); returns a summary dict. `rec`/`det` predictors are made from Global.* unless
    given. `shard` ("I/N"): embed only the data file's paths with path_hash(path) % N == I, so N
    processes (on any machines) fill one gallery; `append` only, and the first shard to arrive creates
    the gallery when it does not exist."""
    ip = cfg["IndexProcess"]
    op = ip["index_operation"]
    if op not in OPERATIONS:
        raise ConfigError(f"IndexProcess.index_operation must be one of {list(OPERATIONS)}, got {op!r}")
    shard = parse_shard(shard)
    if shard is not None and op != "append":
        raise ConfigError(f"--shard {shard[0]}/{shard[1]} needs IndexProcess.index_operation: append (each shard "
                          f"adds its share; the first creates the gallery when it does not exist), not {op}")
    index_dir = gallery_location(ip)[1]  # (index_dir, or milvus's uri: a missing one is a ConfigError)
    if op == "compact":
        g = open_gallery(ip)
        g.compact()
        return {"operation": op, "count": len(g)}
    data_file = _required(ip, "data_file")
    if op == "remove":
        return _remove(ip, data_file)

    image_root = _required(ip, "image_root")
    entries = gallery_entries(data_file, ip["delimiter"], image_root, bool(ip.get("allow_outside_root")))
    if ip["dist_type"] not in ("IP", "L2"):
        raise ConfigError(f"IndexProcess.dist_type: {ip['dist_type']!r} (binary indexes) is not supported; "
                          f"use IP or L2")
    rec = rec or make_rec_predictor(cfg)
    # the size comes from the model; a value in the config is only an assertion about it
    if ip.get("embedding_size") is not None and ip["embedding_size"] != rec.embedding_size:
        raise ConfigError(f"IndexProcess.embedding_size is {ip['embedding_size']} but the model in "
                          f"{cfg['Global'].get('rec_inference_model_dir')} makes {rec.embedding_size}-d vectors; "
                          f"leave IndexProcess.embedding_size out (null) to take the model's")
    fingerprint = model_fingerprint(rec)  # of the weights themselves, not inference.yml's copy
    if det is None and ip.get("use_det"):
        det = make_det_predictor(cfg)
    gallery = None
    skipped = 0
    if shard is not None:
        entries = [(p, lab, f) for p, lab, f in entries if in_shard(p, shard)]
    if op == "new":
        check_creatable(ip, overwrite=True)  # refuse before embedding anything
    if op == "append":
        if shard is not None:
            gallery = open_or_create_gallery(ip, rec.embedding_size, model_fingerprint=fingerprint,
                                             **index_params(ip))
        else:
            gallery = open_gallery(ip, model_fingerprint=fingerprint, embedding_size=rec.embedding_size)
        if ip["dist_type"] != gallery.manifest["dist_type"]:
            raise ConfigError(f"IndexProcess.dist_type is {ip['dist_type']} but the gallery in {index_dir} "
                              f"uses {gallery.manifest['dist_type']}")
        present = stored_keys(gallery, [p for p, _, _ in entries], image_root)
        present.update(_stored_as_another_spelling(gallery, [e for e in entries if e[0] not in present], image_root))
        skipped = sum(p in present for p, _, _ in entries)
        entries = [(p, lab, f) for p, lab, f in entries if p not in present]
    emb = Embedder.from_config(cfg, rec, det).embed_files([os.path.join(image_root, f) for _, _, f in entries],
                                                          desc=f"{op} gallery")
    labels = [entries[i][1] for i in emb.index]
    paths = [entries[i][0] for i in emb.index]
    boxes = emb.boxes if det is not None else None
    if op == "new":
        if not len(emb.vectors):
            raise GalleryError(f"no readable images in {ip['data_file']}: the gallery was not created")
        gallery = create_gallery(ip, rec.embedding_size, model_fingerprint=fingerprint, overwrite=True,
                                 vectors=emb.vectors, labels=labels, paths=paths, boxes=boxes, **index_params(ip))
        added = len(gallery)
    else:
        # (the model is checked again under the writer lock: a `new` may have replaced the gallery meanwhile)
        added = int((gallery.add(emb.vectors, labels, paths, boxes, fingerprint,
                                 **tuning_options(type(gallery), ip)) >= 0).sum()) if len(emb.vectors) else 0
    summary = {"operation": op, "added": added, "already_present": skipped,
               "unreadable": len(emb.unreadable), "count": len(gallery), "labels": len(gallery.labels())}
    if shard is None:  # (a shard leaves it to a run after all shards: the others may still be adding)
        from .calibrate import after_update  # IndexProcess.calibrate, or a stale-calibration warning
        summary.update(after_update(cfg, gallery, op))
    if shard is not None:
        summary["shard"] = f"{shard[0]}/{shard[1]}"
    summary.update(search_summary(gallery))
    return summary


def search_summary(gallery):
    """{"index", "search"}: the method and its search knob with where the value comes from (tuned on the
    gallery's own vectors / override / default, search_tuning.py), for the build output line."""
    setting = gallery.search_setting()
    out = {"index": gallery.manifest.get("index_method")}
    if setting is not None:
        out["search"] = f"{setting['param']}={setting['value']}({setting['origin']})"
    elif out["index"] in ("Flat", "FLAT"):
        out["search"] = "exact"
    return out


def _remove(ip, data_file):
    """IndexProcess.index_operation remove: the listed paths (remove_by: path) or labels (remove_by: label)."""
    if ip.get("remove_by", "path") == "label":
        labels = read_labels(data_file)
        g = open_gallery(ip)
        held = set(g.labels())
        missing = [lab for lab in labels if lab not in held]
        removed = g.remove(labels=[lab for lab in labels if lab in held]) if len(missing) < len(labels) else []
        _not_found(data_file, "labels", missing, ip["delimiter"])
        return {"operation": "remove", "removed": len(removed), "count": len(g), "labels_not_found": len(missing)}
    keys = [k for k, _, _ in gallery_entries(data_file, ip["delimiter"], ip.get("image_root"),
                                             allow_outside_root=True, check_labels=False)]
    g = open_gallery(ip)
    stored = stored_keys(g, keys, ip.get("image_root"))
    removed = g.remove(paths=[p for k in keys for p in stored.get(k, ())]) if stored else []
    missing = [k for k in keys if k not in stored]
    _not_found(data_file, "paths", missing)
    return {"operation": "remove", "removed": len(removed), "count": len(g), "paths_not_found": len(missing)}


def _not_found(data_file, what, missing, delimiter=None):
    """Warn about listed labels / paths the gallery does not hold (names escaped: one line)."""
    if not missing:
        return
    from ..utils.text import printable

    hint = ""
    if delimiter and any(delimiter in m for m in missing):
        hint = (f" (remove_by: label takes each whole line as one label, the delimiter {delimiter!r} included; "
                f"to remove the images of a `path{delimiter}label` list, use remove_by: path)")
    log.warning("%s: %d %s not in the gallery, nothing removed for them: %s%s%s", data_file, len(missing), what,
                ", ".join(printable(m) for m in missing[:5]), ", ..." if len(missing) > 5 else "", hint)


def make_rec_predictor(cfg):
    from ..infer import factory  # paddle loads only when a model is needed
    return factory.rec_predictor(cfg)


def make_det_predictor(cfg):
    from ..infer import factory
    det = factory.det_predictor(cfg, max_det_results=1)
    if det is None:
        raise ConfigError("IndexProcess.use_det is true but Global.det_inference_model_dir is empty")
    return det


def _required(ip, key):
    if not ip.get(key):
        raise ConfigError(f"IndexProcess.{key}: required")
    return ip[key]
