"""Search by image or by text: the nearest gallery images of a query image or sentence (tools/search.py).

    hits, box, rgb = search_image(cfg, rec, gallery, "query.jpg", k=10, det=None, root=folder)
    gallery = open_for_text(cfg.IndexProcess, rec)              # refused unless rec's text encoder may query it
    hits, info = search_text(text_model, gallery, "a red car", k=10, root=folder)
    # hits: [{rank, id, score, label, path, file}] best first; `file` is the path resolved on disk
"""
import os

from ..infer.text import truncation_note  # noqa: F401  (what tools/search.py says)
from . import common


def search_image(cfg, rec, gallery, path, k=10, det=None, root=None):
    """Embed `path` (its main object with `det`) and search `gallery` for its `k` nearest (at most the gallery's
    items: an absurd k costs nothing); ([hit dicts], the query's box, the query image)."""
    vec, box, rgb = common.embedder(cfg, rec, det).embed_file(path)
    return nearest(gallery, vec, k, root), box, rgb


def open_for_text(ip, rec):
    """The gallery IndexProcess names, refused (GalleryError, saying why) unless `rec`'s model has a text
    encoder and made the gallery's vectors (gallery/model_id.py: the fingerprint names both encoders)."""
    from ..gallery.model_id import check_text_queries

    fingerprint = common.model_id(rec)
    gallery = common.open_store(ip)
    try:
        check_text_queries(gallery.model_fingerprint, fingerprint, common.location(ip))
        gallery.check_model(fingerprint, rec.embedding_size)
    except BaseException:
        gallery.close()
        raise
    return gallery


def search_text(text_model, gallery, text, k=10, root=None):
    """Search `gallery` for the `k` images nearest to the sentence `text` (text_model: infer/text.py's
    TextPredictor of the gallery's model); ([hit dicts], {"truncated", "tokens", "context_length"})."""
    out = text_model.embed([text])
    info = {"truncated": bool(out.truncated[0]), "tokens": int(out.counts[0]), "context_length": out.context_length}
    return nearest(gallery, out.vectors[0], k, root), info


def nearest(gallery, vec, k, root=None):
    """[hit dicts] of the `k` gallery items nearest to the unit vector `vec`, best first."""
    labels, scores, ids = gallery.search(vec[None, :], max(1, min(int(k), len(gallery))))
    valid = [(int(i), float(s), lab) for i, s, lab in zip(ids[0], scores[0], labels[0]) if i >= 0]
    records = {r["id"]: r for r in gallery.records([i for i, _, _ in valid])} if valid else {}
    hits = []
    for rank, (i, score, label) in enumerate(valid, 1):
        rec_path = (records.get(i) or {}).get("path")
        hits.append({"rank": rank, "id": i, "score": score, "label": label, "path": rec_path,
                     "file": common.resolve(rec_path, root)})
    return hits


def hits_sheet(cfg, query_rgb, hits, query_box=None, title=None, tile=160, columns=5):
    """The contact sheet of a search: the query, then each hit captioned `label`, `score`, file name."""
    from .sheet import contact_sheet

    tiles = []
    for h in hits:
        try:
            rgb = common.load_image(cfg, h["file"]) if h["file"] else None
        except OSError:
            rgb = None  # moved or deleted since it was indexed
        name = os.path.basename(h["path"]) if h["path"] else f"id {h['id']}"
        tiles.append((rgb, [f"{h['rank']}. {h['label']}", f"score {h['score']:.3f}", name], h["label"]))
    return contact_sheet(query_rgb, tiles, tile=tile, columns=columns, query_box=query_box,
                         font_path=(cfg.get("Global") or {}).get("font_path"), title=title)
