"""Text-to-image retrieval scores: each caption query ranks every image by cosine; recall@k is the share of
queries with an image of their combination among the first k. Chance is the same figure for a random ranking.

    text_to_image_recall(text_emb, text_combos, image_emb, image_combos, topk=(1, 5)) -> {"recall1": ...}
    chance_recall(text_combos, image_combos, topk=(1, 5)) -> {"recall1": ...}
"""
from math import comb

import numpy as np


def text_to_image_recall(text_emb, text_combos, image_emb, image_combos, topk=(1, 5)):
    sim = np.asarray(text_emb, np.float32) @ np.asarray(image_emb, np.float32).T
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.asarray(image_combos)[order] == np.asarray(text_combos)[:, None]
    return {f"recall{k}": float(np.mean(hits[:, :k].any(axis=1))) for k in topk}


def chance_recall(text_combos, image_combos, topk=(1, 5)):
    """Expected recall@k of a uniformly random ranking: 1 - C(M - m, k) / C(M, k) for a query with m of the
    M images."""
    image_combos = np.asarray(image_combos)
    m_all = len(image_combos)
    out = {}
    for k in topk:
        per_query = [1 - comb(m_all - int(np.sum(image_combos == c)), k) / comb(m_all, k) for c in text_combos]
        out[f"recall{k}"] = float(np.mean(per_query))
    return out
