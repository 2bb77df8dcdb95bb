"""What a match's score is, for the threshold that makes it a label or "unknown" (IndexProcess.score).

* cosine (default): the top-1 match's score as the store gives it (cosine for IP, squared distance for L2).
* neighbourhood: the top-1 score minus the mean score of the query's 2nd to 10th nearest gallery items, in
  "higher is better" units (IP: cosines; L2: distances, negated) so always >= 0. A detector's crop on a photo
  scores lower against every gallery item than a gallery image does against its own label's, which moves a
  raw cosine and its calibrated threshold apart; measured against the query's own neighbourhood the score
  keeps closer to what the gallery's own items show. bench/results/bench_scene_scores.md: calibrated on the
  gallery for precision 0.95, on held-out photo scenes F1 0.376 (precision 0.880) vs the cosine's 0.294
  (precision 0.941); for target 0.8 0.525 vs 0.508. The gallery must hold more than NEIGHBOURS items.
"""
import numpy as np

from ..errors import ConfigError
from .neighbours import to_score

SCORES = ("cosine", "neighbourhood")
NEIGHBOURS = 10
DEFAULT_NEIGHBOURHOOD_THRES = 0.08  # F1-optimal on the dev scenes of bench_scene_scores (0.065 and 0.098)


def check_score(score, what="IndexProcess.score"):
    if score not in SCORES:
        raise ConfigError(f"{what} must be one of {', '.join(SCORES)}, got {score!r}")
    return score


def search_k(score, return_k):
    """How many matches a query needs for its score."""
    return max(int(return_k), NEIGHBOURS) if score == "neighbourhood" else int(return_k)


def neighbourhood_scores(sorted_scores, higher_is_better=True):
    """Per row of matches (best first, store units; -inf/+inf/NaN past the gallery): top-1 minus the mean of
    matches 2..NEIGHBOURS, higher is better; NaN where fewer than two matches exist."""
    s = to_score(np.asarray(sorted_scores, np.float64)[:, :NEIGHBOURS], higher_is_better)
    valid = np.isfinite(s)
    rest = np.where(valid[:, 1:], s[:, 1:], 0.0)
    n_rest = valid[:, 1:].sum(1)
    with np.errstate(all="ignore"):
        out = s[:, 0] - rest.sum(1) / n_rest
    return np.where(valid[:, 0] & (n_rest > 0), out, np.nan)
