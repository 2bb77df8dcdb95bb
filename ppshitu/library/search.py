"""Search by image: the nearest gallery images of a query image (tools/search.py).

    hits, box = search_image(cfg, rec, gallery, "query.jpg", k=10, det=None, root=folder)
    # hits: [{rank, id, score, label, path, file}] best first; `file` is the path resolved on disk
"""
import os

from . import common


def search_image(cfg, rec, gallery, path, k=10, det=None, root=None):
    """Embed `path` (its main object with `det`) and search `gallery` for its `k` nearest (at most the gallery's
    items: an absurd k costs nothing); ([hit dicts], the query's box, the query image)."""
    vec, box, rgb = common.embedder(cfg, rec, det).embed_file(path)
    labels, scores, ids = gallery.search(vec[None, :], max(1, min(int(k), len(gallery))))
    valid = [(int(i), float(s), lab) for i, s, lab in zip(ids[0], scores[0], labels[0]) if i >= 0]
    records = {r["id"]: r for r in gallery.records([i for i, _, _ in valid])} if valid else {}
    hits = []
    for rank, (i, score, label) in enumerate(valid, 1):
        rec_path = (records.get(i) or {}).get("path")
        hits.append({"rank": rank, "id": i, "score": score, "label": label, "path": rec_path,
                     "file": common.resolve(rec_path, root)})
    return hits, box, rgb


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
