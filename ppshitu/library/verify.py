"""Is a candidate pair the same picture, edited? Local features and geometry, then the aligned content.

The embedding proposes candidate pairs (duplicates.py); this module decides, as copy detection does.
For two images A and B (A the one with more pixels):

1. **Local features.** SIFT keypoints with RootSIFT descriptors, computed once per image at a
   working size (longer side `WORK_SIDE`; smaller images are enlarged to `DETECT_MIN_SIDE` for
   detection only), matched with Lowe's ratio test (`RATIO`), one match per keypoint of A.
2. **Geometry.** RANSAC fits a similarity transform B -> A (rotation, uniform scale, shift: what
   crops, resizes and small rotations make; cv2.estimateAffinePartial2D); `inliers` counts the
   matches it explains. Where that gives fewer than `FRAME_TRY_BELOW` inliers (a smooth or tiny
   image has few keypoints), the whole-frame hypothesis is tried too: B stretched onto A's frame, as
   it is and refined by ECC on small grey copies (`aligned == "frame"`, kept when the correlation
   `ecc` reaches `MIN_ECC`). Of these, the alignment whose content agrees better is kept.
3. **Overlap.** `overlap` = min(intersection / area of A, intersection / area of B), B's frame
   mapped into A's: two crops of a photo that share less than half their area get < 0.5.
4. **Content of the aligned overlap.** Both images are resampled onto one grid over the overlap (at
   most `CANVAS` px, no finer than the coarser of the two, a light blur for JPEG blocks), leaving out
   an outer band of each frame (`BORDER`: what a rotation fills in). Per colour channel a global gain
   and offset are fitted (least squares, refitted on the 80 % it explains best: brightness,
   contrast and white balance are edits of the same picture); a value clipped in one image (the edit
   lost what was beyond) only bounds the other: it disagrees by how far the other falls short of the
   clip level mapped across (a white shirt turned yellow still disagrees). A pixel DISAGREES
   when its residual exceeds 3 x the image's median residual (its noise: JPEG, resampling) + 0.4 x
   the local gradient (a sub-pixel misalignment at an edge) + 3 levels, both sides averaged over
   the pixel's 3 x 3 neighbourhood: an edit's disagreement is scattered single pixels (JPEG blocks,
   resampling at edges), a changed region's is solid, so the averaging clears the one and keeps the
   other (on the development sets it doubled the margin between the edited copies' worst tiles and
   the colour variants' and neighbouring frames': with a full 0.75 x gradient allowance a
   recoloured striped object was forgiven at every stripe edge). The grid is cut into
   `TILES` x `TILES` tiles and `local` is the share of disagreeing pixels in the WORST tile: a
   recoloured shirt, a subject that moved between two frames of a burst, a changed sign make a few
   tiles disagree while the share over the whole image stays small (what a global measure misses).
   `residual` (worst tile's mean residual in units of A's contrast) and `global` (the whole
   overlap's) are reported beside it.

A `Rule` (min inliers, max local disagreement, min overlap) turns the evidence into a verdict; the
rule is chosen per folder at run time (dupcalibrate.py). Everything here works on RGB uint8 arrays
(reading files is the caller's: utils.image.read_image, which applies the EXIF orientation) and is
deterministic (RANSAC is seeded).
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 256          # px: the longer side keypoints are found at (never enlarged beyond the file);
#                          SIFT is most of verification's time and grows with the pixels: 256 px took 0.6 x the
#                          CPU time of 320 px and kept as many edited copies aligned on the development sets
DETECT_MIN_SIDE = 192    # px: smaller images are enlarged to this for keypoint detection only
KEEP_SIDE = 160          # px: the longer side of the copy kept for the content check
N_FEATURES = 500
CONTRAST_THRESHOLD = 0.01   # SIFT's (default 0.04 finds next to nothing on smooth photos)
RATIO = 0.8              # Lowe's ratio test
MIN_MATCHES = 6
RANSAC_PX = 0.012        # RANSAC reprojection threshold, as a share of A's longer side
MAX_SCALE = 8.0          # a transform scaling more than this is no edit
ECC_SIDE = 96            # px: the whole-frame alignment works on grey copies this size
MAX_FRAME_ASPECT = 0.35  # |log of the aspect ratios' quotient| up to which two frames are tried as one
FRAME_TRY_BELOW = 20     # the whole-frame alignment is tried when features give fewer inliers
MIN_ECC = 0.8            # ... and kept when its correlation reaches this
CANVAS = 112             # px: the longer side of the comparison grid over the overlap
TILES = 6                # the overlap is cut into TILES x TILES tiles
TILE_MIN_VALID = 0.5     # a tile counts when at least this share of it is compared
CLIP_LO, CLIP_HI = 12, 243
BORDER = 0.04            # the outer band (share of each image's side) left out of the content check
NOISE_K, GRAD_K, FLOOR = 3.0, 0.4, 3.0    # a pixel disagrees past NOISE_K x noise + GRAD_K x gradient + FLOOR
SMOOTH = 3               # px: ... both sides of that test averaged over SMOOTH x SMOOTH first


@dataclass
class Prepared:
    """One image ready for verification: a small RGB copy and its keypoints (in that copy's pixels)."""
    rgb: np.ndarray            # longer side <= KEEP_SIDE, uint8
    points: np.ndarray         # [N, 2] float32 keypoint coordinates in `rgb`'s frame
    desc: np.ndarray           # [N, 128] float16 RootSIFT (unit L2 rows; half precision: half the memory)
    size: tuple                # the decoded image's (width, height)

    @property
    def frame(self):
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def nbytes(self):
        return self.rgb.nbytes + self.points.nbytes + self.desc.nbytes


def _shrunk(rgb, side):
    h, w = rgb.shape[:2]
    s = side / float(max(h, w))
    if s >= 1:
        return np.ascontiguousarray(rgb), 1.0
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def prepare(rgb):
    """Prepared of an RGB uint8 image."""
    h, w = rgb.shape[:2]
    work, s_work = _shrunk(rgb, WORK_SIDE)
    keep, s_keep = _shrunk(rgb, KEEP_SIDE)
    pts = np.zeros((0, 2), np.float32)
    desc = np.zeros((0, 128), np.float16)
    grey = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    if min(grey.shape) >= 8:
        up = max(1.0, DETECT_MIN_SIDE / float(max(grey.shape)))
        if up > 1:
            grey = cv2.resize(grey, (round(grey.shape[1] * up), round(grey.shape[0] * up)),
                              interpolation=cv2.INTER_CUBIC)
        kp, d = cv2.SIFT_create(nfeatures=N_FEATURES, contrastThreshold=CONTRAST_THRESHOLD).detectAndCompute(grey, None)
        if d is not None and len(kp):
            d = d.astype(np.float32)
            d /= np.maximum(d.sum(1, keepdims=True), 1e-7)      # RootSIFT: L1-normalise, then sqrt
            desc = np.sqrt(d).astype(np.float16)
            # keypoints in the kept copy's pixels (centres of pixels map to centres)
            k = s_keep / (s_work * up)
            pts = (np.float32([p.pt for p in kp]) + 0.5) * k - 0.5
    return Prepared(keep, pts.astype(np.float32), desc, (w, h))


# ------------------------------------------------------------------ geometry
def match(a, b):
    """(points in B, points in A) of B's descriptors matched to A's: Lowe's ratio test on the two
    nearest, then one match per A point (the closest). RootSIFT rows have unit L2 norm, so squared
    distances are 2 - 2 x dot products (one matrix product)."""
    if len(a.desc) < 2 or len(b.desc) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    sim = b.desc.astype(np.float32) @ a.desc.astype(np.float32).T     # [nb, na]
    rows = np.arange(len(sim))
    i1 = sim.argmax(1)
    s1 = sim[rows, i1].copy()
    sim[rows, i1] = -np.inf
    s2 = sim.max(1)
    d1 = np.sqrt(np.maximum(2 - 2 * s1, 0))
    d2 = np.sqrt(np.maximum(2 - 2 * s2, 0))
    ok = d1 < RATIO * d2
    qi, ti, di = np.flatnonzero(ok), i1[ok], d1[ok]
    if len(qi):
        order = np.lexsort((di, ti))
        qi, ti = qi[order], ti[order]
        first = np.r_[True, ti[1:] != ti[:-1]]
        qi, ti = qi[first], ti[first]
    return b.points[qi].reshape(-1, 2), a.points[ti].reshape(-1, 2)


def fit_transform(pb, pa, a_side):
    """(2x3 similarity mapping B -> A, inlier count), or (None, 0)."""
    if len(pa) < MIN_MATCHES:
        return None, 0
    cv2.setRNGSeed(12345)
    m, mask = cv2.estimateAffinePartial2D(pb, pa, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX * a_side,
                                          maxIters=2000, confidence=0.995, refineIters=10)
    if m is None or mask is None or not np.isfinite(m).all():
        return None, 0
    scale = math.hypot(m[0, 0], m[1, 0])
    if not (1.0 / MAX_SCALE <= scale <= MAX_SCALE):
        return None, 0
    return m, int(mask.sum())


def frame_alignment(a, b, side=ECC_SIDE):
    """[(2x3 mapping B -> A, ECC correlation)] from the hypothesis that B shows A's whole frame
    (re-encoded, resized, toned, a little cropped or rotated): B stretched onto A's frame as it is,
    and that refined by ECC (affine) on small grey copies (a smooth image can pull ECC astray, so both
    are kept); [] when the frames' shapes differ too much or there is nothing to correlate."""
    (aw, ah), (bw, bh) = a.frame, b.frame
    if abs(math.log((aw / ah) / (bw / bh))) > MAX_FRAME_ASPECT:
        return []
    s = side / float(max(aw, ah))
    w, h = max(8, round(aw * s)), max(8, round(ah * s))
    ga = cv2.cvtColor(cv2.resize(a.rgb, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(cv2.resize(b.rgb, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if ga.std() < 2 or gb.std() < 2:
        return []
    to_small_a = np.float64([[w / aw, 0, 0], [0, h / ah, 0], [0, 0, 1]])
    to_small_b = np.float64([[w / bw, 0, 0], [0, h / bh, 0], [0, 0, 1]])

    def b_to_a(warp):   # warp maps A-small to B-small coordinates
        a_to_b = np.linalg.inv(to_small_b) @ np.vstack([warp, [0, 0, 1]]) @ to_small_a
        return np.linalg.inv(a_to_b)[:2]
    za, zb = (ga - ga.mean()) / ga.std(), (gb - gb.mean()) / gb.std()
    out = [(b_to_a(np.eye(2, 3)), float((za * zb).mean()))]
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        cc, warp = cv2.findTransformECC(ga, gb, warp, cv2.MOTION_AFFINE,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4), None, 3)
        m = b_to_a(warp)
        if np.isfinite(m).all():
            out.append((m, float(cc)))
    except (cv2.error, np.linalg.LinAlgError):
        pass
    return out


def _corners(w, h):
    return np.float32([[0, 0], [w, 0], [w, h], [0, h]])


def overlap(m, a_frame, b_frame):
    """min(share of A's area that B covers, share of B's area that A covers), B mapped by `m`."""
    aw, ah = a_frame
    bw, bh = b_frame
    quad = cv2.transform(_corners(bw, bh)[None], m)[0]
    area, _ = cv2.intersectConvexConvex(_corners(aw, ah), quad)
    scale2 = abs(np.linalg.det(m[:, :2]))
    return float(min(area / (aw * ah), area / max(bw * bh * scale2, 1e-9)))


# ------------------------------------------------------------------ content of the aligned overlap
def _clipped(rgb):
    """(top, bottom): uint8 [H, W, 3] masks (255) of the values clipped at the top and at the bottom of
    each channel, widened a little (resampling and blur spread a clipped value to its neighbours)."""
    kernel = np.ones((5, 5), np.uint8)
    return (cv2.dilate((rgb >= CLIP_HI).astype(np.uint8) * 255, kernel),
            cv2.dilate((rgb <= CLIP_LO).astype(np.uint8) * 255, kernel))


def _fit_channels(a, b, valid):
    """(b mapped onto a per channel by gain and offset, gains, offsets): least squares, refitted twice
    on the 80 % of the pixels it explains best (a changed region does not pull the fit), over
    valid[..., c]."""
    out = np.empty_like(b)
    gains, offsets = np.ones(a.shape[2]), np.zeros(a.shape[2])
    for c in range(a.shape[2]):
        x = b[..., c][valid[..., c]].astype(np.float64)
        y = a[..., c][valid[..., c]].astype(np.float64)
        if len(x) < 32:  # (nearly) all clipped: nothing to fit
            out[..., c] = b[..., c]
            continue
        xs, ys, g, o = x, y, 1.0, 0.0
        for _ in range(3):
            mx, my = xs.mean(), ys.mean()
            vx = float(((xs - mx) ** 2).mean())
            g = float(((xs - mx) * (ys - my)).mean() / vx) if vx > 1e-6 else 1.0
            g = min(max(g, 0.2), 5.0)
            o = float(my - g * mx)
            r = np.abs(y - (g * x + o))
            q = int(0.8 * (len(r) - 1))
            sel = r <= max(float(np.partition(r, q)[q]), 1.0)
            xs, ys = x[sel], y[sel]
        out[..., c] = g * b[..., c] + o
        gains[c], offsets[c] = g, o
    return out, gains, offsets


def _band_mask(h, w):
    m = np.zeros((h, w), np.uint8)
    i, j = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    m[i:h - i, j:w - j] = 255
    return m


def content(a, b, m, keep_maps=False):
    """{local, residual, global, tiles, canvas} of B aligned onto A by `m` (module docstring), or None
    when the overlap is too small to compare. `keep_maps`: also the arrays (for pictures of it)."""
    ah, aw = a.rgb.shape[:2]
    bh, bw = b.rgb.shape[:2]
    quad = cv2.transform(_corners(bw, bh)[None], m)[0]
    x0, y0 = np.maximum(quad.min(0), 0)
    x1, y1 = np.minimum(quad.max(0), (aw, ah))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))        # A px per B px
    # the grid: at most CANVAS px, and no finer than either image over the overlap
    ext = max(x1 - x0, y1 - y0)
    side = max(16, int(0.8 * min(CANVAS, ext, ext / max(scale, 1e-6))))
    f = side / ext                                          # grid px per A px
    cw, ch = max(4, round((x1 - x0) * f)), max(4, round((y1 - y0) * f))
    to_grid = np.float64([[f, 0, -x0 * f], [0, f, -y0 * f]])
    b_to_grid = to_grid @ np.vstack([m, [0, 0, 1]])
    fb_ = scale * f                                         # grid px per B px
    asrc = cv2.blur(a.rgb, (max(1, round(1 / f)),) * 2) if f < 0.5 else a.rgb
    bsrc = cv2.blur(b.rgb, (max(1, round(1 / fb_)),) * 2) if fb_ < 0.5 else b.rgb
    size = (cw, ch)
    ca = cv2.warpAffine(asrc, to_grid, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cb = cv2.warpAffine(bsrc, b_to_grid, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (cv2.warpAffine(_band_mask(ah, aw), to_grid, size, flags=cv2.INTER_NEAREST) > 0) & \
             (cv2.warpAffine(_band_mask(bh, bw), b_to_grid, size, flags=cv2.INTER_NEAREST) > 0)
    inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    a_hi, a_lo = (cv2.warpAffine(k, to_grid, size, flags=cv2.INTER_LINEAR) > 0 for k in _clipped(a.rgb))
    b_hi, b_lo = (cv2.warpAffine(k, b_to_grid, size, flags=cv2.INTER_LINEAR) > 0 for k in _clipped(b.rgb))
    ca = cv2.GaussianBlur(ca.astype(np.float32), (0, 0), 0.8)
    cb = cv2.GaussianBlur(cb.astype(np.float32), (0, 0), 0.8)
    valid = inside
    if valid.sum() < 64:
        return None
    fb, _, _ = _fit_channels(ca, cb, inside[..., None] & ~(a_hi | a_lo | b_hi | b_lo))
    # a clipped value only bounds the truth (the edit lost what was beyond): B clipped at the top
    # says A is at least what B maps to, A clipped at the top says B maps to at least A, and so on;
    # such values disagree only by how far they fall on the wrong side
    d = ca - fb
    over, under = np.maximum(d, 0), np.maximum(-d, 0)
    inf = np.float32(np.inf)
    one_b = np.where(b_hi, under, np.where(b_lo, over, inf))
    one_a = np.where(a_hi, over, np.where(a_lo, under, inf))
    per_channel = np.minimum(np.abs(d), np.minimum(one_a, one_b))
    fb = ca - np.sign(d) * per_channel   # (what B's content is taken to be, for pictures of it)
    la = ca.mean(2)
    contrast = max(float(la[valid].std()), 8.0)
    r = per_channel.mean(2)
    gx = cv2.Sobel(ca, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(ca, cv2.CV_32F, 0, 1, ksize=3) / 8
    grad = np.sqrt(gx * gx + gy * gy).max(2)
    noise = float(np.median(r[valid]))
    # both sides of the test averaged over a pixel's neighbourhood (within the compared pixels)
    k = (SMOOTH, SMOOTH)
    near = np.maximum(cv2.blur(valid.astype(np.float32), k), 1e-3)
    r_near = cv2.blur(np.where(valid, r, 0).astype(np.float32), k) / near
    out = (r_near > cv2.blur((NOISE_K * noise + GRAD_K * grad + FLOOR).astype(np.float32), k)) & valid
    # per tile (bincount over a tile-index map): compared pixels, residual, disagreeing pixels
    tile = (np.arange(ch) * TILES // ch)[:, None] * TILES + (np.arange(cw) * TILES // cw)[None, :]
    nt = TILES * TILES
    tid = tile[valid]
    count = np.bincount(tid, minlength=nt).astype(np.float64)
    total = np.bincount(tile.ravel(), minlength=nt).astype(np.float64)
    used = (total > 0) & (count >= TILE_MIN_VALID * np.maximum(total, 1))
    if not used.any():
        return None
    n = np.maximum(count, 1)
    resid = np.bincount(tid, weights=(r[valid] / contrast).astype(np.float64), minlength=nt) / n
    share = np.bincount(tid, weights=out[valid].astype(np.float64), minlength=nt) / n
    result = {"local": float(share[used].max()), "residual": float(resid[used].max()),
              "global": float((r[valid] / contrast).mean()), "disagreeing": float(out[valid].mean()),
              "tiles": int(used.sum()), "canvas": [int(cw), int(ch)]}
    if keep_maps:
        result["maps"] = {"a": ca, "b": fb, "disagree": out, "valid": valid}
    return result


# ------------------------------------------------------------------ one pair
@dataclass
class Evidence:
    """What verification measured for one pair (see the module docstring)."""
    matches: int = 0
    inliers: int = 0
    aligned: str = None          # "features" | "frame" | None (no alignment found)
    ecc: float = 0.0
    scale: float = 0.0
    overlap: float = 0.0
    local: float = 1.0           # share of disagreeing pixels in the worst tile
    residual: float = math.inf   # the worst tile's mean residual / A's contrast
    global_: float = math.inf    # the whole overlap's

    def as_dict(self):
        def r(v):
            return (round(v, 4) if math.isfinite(v) else None) if isinstance(v, float) else v
        return {"matches": self.matches, "inliers": self.inliers, "aligned": self.aligned, "ecc": r(self.ecc),
                "scale": r(self.scale), "overlap": r(self.overlap), "local": r(self.local),
                "residual": r(self.residual), "global": r(self.global_)}


def compare(a, b):
    """Evidence for two Prepared images, B aligned onto A: the feature alignment, and where that is
    weak the whole-frame one; of those, the one whose aligned content agrees better."""
    pb, pa = match(a, b)
    ev = Evidence(matches=len(pa))
    m, ev.inliers = fit_transform(pb, pa, max(a.frame))
    hyps = [("features", m, 0.0)] if m is not None else []
    if ev.inliers < FRAME_TRY_BELOW:
        hyps += [("frame", mf, cc) for mf, cc in frame_alignment(a, b) if cc >= MIN_ECC]
    best = None
    for how, mm, cc in hyps:
        c = content(a, b, mm)
        if c is not None and (best is None or c["local"] < best[2]["local"]):
            best = (how, mm, c, cc)
    if best is None:
        return ev
    how, mm, c, cc = best
    ev.aligned, ev.ecc = how, cc
    ev.scale = float(math.sqrt(abs(np.linalg.det(mm[:, :2]))))
    ev.overlap = overlap(mm, a.frame, b.frame)
    ev.local, ev.residual, ev.global_ = c["local"], c["residual"], c["global"]
    return ev


def compare_pair(a, b):
    """compare() with the image of more pixels as A (its grid is the finer)."""
    if a.rgb.shape[0] * a.rgb.shape[1] < b.rgb.shape[0] * b.rgb.shape[1]:
        a, b = b, a
    return compare(a, b)


# ------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    """The same picture, edited: aligned (by >= min_inliers RANSAC inliers, or by the whole frame at
    ECC >= MIN_ECC), overlap >= min_overlap, local <= max_local (no tile disagrees) and global <=
    max_global (nor the whole: the per-pixel test is relative to the image's own noise, so it cannot
    see a disagreement everywhere). `matched`: the geometry alone agrees (the same scene or object:
    near shots, crops, variants)."""
    min_inliers: int
    max_local: float
    max_global: float = 0.5
    min_overlap: float = 0.6
    source: str = ""

    def aligned(self, ev):
        return (ev.aligned == "features" and ev.inliers >= self.min_inliers) or ev.aligned == "frame"

    def duplicate(self, ev):
        return (self.aligned(ev) and ev.overlap >= self.min_overlap and ev.local <= self.max_local
                and ev.global_ <= self.max_global)

    def matched(self, ev):
        return ev.inliers >= self.min_inliers

    def describe(self):
        return (f"aligned by >= {self.min_inliers} RANSAC inliers (or the whole frame, ECC >= {MIN_ECC}), overlap >= "
                f"{self.min_overlap:.2f}; after a global gain/offset per channel, <= {self.max_local:.1%} of the "
                f"worst tile's pixels disagreeing and a mean residual <= {self.max_global:.2f} x the image's contrast")

    def as_dict(self):
        return {"min_inliers": self.min_inliers, "max_local": self.max_local, "max_global": self.max_global,
                "min_overlap": self.min_overlap, "source": self.source, "text": self.describe()}

    @classmethod
    def from_dict(cls, d, source=None):
        return cls(int(d["min_inliers"]), float(d["max_local"]), float(d.get("max_global", 0.5)),
                   float(d.get("min_overlap", 0.6)), source if source is not None else d.get("source", ""))


def verdict(ev, rule, cosine=None, same_object=None, similar=None):
    """'the same picture, edited' | 'the same object' | 'similar' | 'different' for a pair's evidence;
    with the embedding cosine and the model's calibrated cosines, unverified pairs can still be
    'the same object' / 'similar' by the embedding."""
    if ev is not None and rule.duplicate(ev):
        return "the same picture, edited"
    if ev is not None and rule.matched(ev):
        return "the same object"
    if cosine is not None and same_object is not None and cosine >= same_object:
        return "the same object"
    if cosine is not None and similar is not None and cosine >= similar:
        return "similar"
    return "different"
