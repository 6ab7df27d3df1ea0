"""Where the tracked face should be in the next frame: image motion of the face since the last detection
(pyramidal Lucas-Kanade + robust similarity fit; chained frame to frame, or straight from the keyframe), a
constant-velocity model of the face's similarity (position, rotation, scale) as its starting guess, and the
detector box that goes with a set of landmarks (learned from the track's own detections).

Coordinates: frame pixel-index coords (x right, y down), as the backends return.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["BoxModel", "ChainFlow", "FlowResult", "KeyframeFlow", "face_scale", "interocular",
           "extrapolate_landmarks", "extrapolate_similarity", "similarity_fit"]


def interocular(lm: np.ndarray) -> float:
    """Inter-ocular distance of one landmark set [K, 2]: outer eye corners (36, 45) for 68 points, the two eye
    centres for 5 points (pixels)."""
    lm = np.asarray(lm, np.float64)
    a, b = (36, 45) if lm.shape[0] == 68 else (0, 1)
    return float(np.linalg.norm(lm[a] - lm[b]))


def face_scale(lm: np.ndarray) -> float:
    """RMS distance of the landmarks [K, 2] from their centroid (pixels): a rotation-free size of the face."""
    lm = np.asarray(lm, np.float64)
    return float(np.sqrt(((lm - lm.mean(0)) ** 2).sum(1).mean()))


class BoxModel:
    """Maps landmarks to the box the detector would draw around them, so the landmark model gets the kind of box
    it was trained on. Learned as running means over the track's detections of (box centre - landmark centroid)
    / scale and (box width, height) / scale, scale = `face_scale`."""

    def __init__(self) -> None:
        self._sum = np.zeros(4)
        self._n = 0

    def observe(self, landmarks: np.ndarray, box: np.ndarray) -> None:
        """Add one detection: landmarks [K, 2] and its box [4] (x0, y0, x1, y1)."""
        c, s = np.asarray(landmarks, np.float64).mean(0), face_scale(landmarks)
        if not np.isfinite(s) or s <= 0:
            return
        b = np.asarray(box, np.float64)
        self._sum += [((b[0] + b[2]) / 2 - c[0]) / s, ((b[1] + b[3]) / 2 - c[1]) / s, (b[2] - b[0]) / s,
                      (b[3] - b[1]) / s]
        self._n += 1

    @property
    def ready(self) -> bool:
        """True once at least one detection was observed."""
        return self._n > 0

    def box(self, landmarks: np.ndarray) -> np.ndarray:
        """[4] float64 (x0, y0, x1, y1) for landmarks [K, 2] (the landmarks' bounding box before any detection)."""
        lm = np.asarray(landmarks, np.float64)
        if not self.ready:
            return np.r_[lm.min(0), lm.max(0)]
        dx, dy, w, h = self._sum / self._n
        c, s = lm.mean(0), face_scale(lm)
        cx, cy = c[0] + dx * s, c[1] + dy * s
        return np.array([cx - w * s / 2, cy - h * s / 2, cx + w * s / 2, cy + h * s / 2])


def extrapolate_landmarks(times: list[int], landmarks: list[np.ndarray], t: int) -> np.ndarray:
    """Constant-velocity prediction: a least-squares line per coordinate through the given frames, evaluated at t.

    Args:
        times: frame indices of the known landmark sets (ascending, at least one).
        landmarks: [K, 2] per time.
        t: the frame to predict.
    Returns:
        [K, 2] float64 (the last set when only one is known).
    """
    lm = np.stack([np.asarray(x, np.float64) for x in landmarks])
    if len(times) < 2:
        return lm[-1].copy()
    tt = np.asarray(times, np.float64)
    tc = tt - tt.mean()
    slope = np.tensordot(tc, lm - lm.mean(0), axes=(0, 0)) / (tc ** 2).sum()
    return lm.mean(0) + slope * (t - tt.mean())


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking points src [N, 2] to dst [N, 2]
    (closed form, N >= 2). Returns [2, 3] float64 (dst ~ src @ m[:, :2].T + m[:, 2])."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    cs, cd = src.mean(0), dst.mean(0)
    a, b = src - cs, dst - cd
    den = max(float((a ** 2).sum()), 1e-12)
    p = float((a * b).sum()) / den
    q = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / den
    r = np.array([[p, -q], [q, p]])
    return np.hstack([r, (cd - r @ cs)[:, None]])


def extrapolate_similarity(times: list[int], landmarks: list[np.ndarray], t: int) -> np.ndarray:
    """Constant-velocity prediction of the face's similarity: the last landmark set moved by the position
    (centroid), rotation and log-scale that least-squares lines through the given frames reach at t. Follows a
    turning and zooming face, which per-point lines (`extrapolate_landmarks`) shear and shrink.

    Args:
        times: frame indices of the known landmark sets (ascending, at least one).
        landmarks: [K, 2] per time.
        t: the frame to predict.
    Returns:
        [K, 2] float64 (the last set when only one is known).
    """
    lms = [np.asarray(x, np.float64) for x in landmarks]
    last = lms[-1]
    if len(times) < 2:
        return last.copy()
    params = []
    for lm in lms:
        m = similarity_fit(last, lm)
        params.append([np.log(max(np.hypot(m[0, 0], m[1, 0]), 1e-9)), np.arctan2(m[1, 0], m[0, 0]),
                       *lm.mean(0)])
    p = np.asarray(params)
    tt = np.asarray(times, np.float64)
    tc = tt - tt.mean()
    slope = tc @ (p - p.mean(0)) / (tc ** 2).sum()
    # the last frame's parameters are (0, 0, centroid): move them by the fitted line's change from the last time
    d = slope * (t - tt[-1])
    ls, th = d[0], d[1]
    c = last.mean(0) + d[2:]
    rot = np.exp(ls) * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return (last - last.mean(0)) @ rot.T + c


@dataclass
class FlowResult:
    """Landmarks carried from one frame to the next by the image motion of the face region.

    Attributes:
        landmarks: [K, 2] float64 in the new frame.
        matrix: [2, 3] float64 similarity transform old frame -> new frame.
        inliers: points whose flow agrees with the fitted transform.
        tracked: points tracked forward and back consistently (before the fit).
    """

    landmarks: np.ndarray
    matrix: np.ndarray
    inliers: int
    tracked: int


class KeyframeFlow:
    """Carry the landmarks of a keyframe (the track's last detection) into later frames by the image motion of
    the face: Shi-Tomasi corners inside the keyframe's landmark hull are tracked straight from the keyframe to the
    current frame with pyramidal Lucas-Kanade (started from a guess, e.g. the constant-velocity prediction), kept
    when the backward track returns within 1 px, and a similarity transform is fitted to them with RANSAC. Anchoring
    on the keyframe instead of chaining frame to frame keeps the error from accumulating, and the corners all lie
    on the face as it was before anything covered it, so an occluder's corners are never followed.

    Args:
        gray: [H, W] uint8 keyframe.
        landmarks: [K, 2] keyframe landmarks.
    """

    def __init__(self, gray: np.ndarray, landmarks: np.ndarray) -> None:
        self.gray = gray
        self.landmarks = np.asarray(landmarks, np.float64)
        self._pts: np.ndarray | None = None

    def _points(self) -> np.ndarray:
        if self._pts is None:
            h, w = self.gray.shape[:2]
            mask = np.zeros((h, w), np.uint8)
            hull = cv2.convexHull(np.round(self.landmarks).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 255)
            iod = max(interocular(self.landmarks), 1.0)
            pts = cv2.goodFeaturesToTrack(self.gray, maxCorners=200, qualityLevel=0.01,
                                          minDistance=max(3.0, iod / 20), mask=mask, blockSize=5)
            self._pts = np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2).astype(np.float32)
        return self._pts

    def track(self, gray: np.ndarray, guess: np.ndarray | None = None, min_points: int = 12,
              gate: float = 0.1, max_jump: float = 0.06) -> FlowResult | None:
        """Landmarks in `gray` ([H, W] uint8), or None when too few corners follow one rigid motion (blanked or
        fully covered face).

        Args:
            guess: [K, 2] rough landmarks in `gray` (the corners start where the similarity keyframe -> guess puts
                them, and only corners that land within `gate` inter-ocular distances of there vote); None starts
                them where they were.
            min_points: fewest corners agreeing on one motion.
            max_jump: with a guess, the moved landmarks must lie within this many inter-ocular distances of it
                (mean), else the motion is refused (the face cannot jump; the corners followed something else).
        """
        pts = self._points()
        if len(pts) < min_points:
            return None
        start, m0 = pts.copy(), None
        if guess is not None:
            m0, _ = cv2.estimateAffinePartial2D(self.landmarks.astype(np.float32), np.asarray(guess, np.float32),
                                                method=cv2.LMEDS)
            if m0 is not None:
                start = (pts @ m0[:, :2].T + m0[:, 2]).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.01)
        win = (21, 21)
        flag = cv2.OPTFLOW_USE_INITIAL_FLOW
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(self.gray, gray, pts.reshape(-1, 1, 2), start.reshape(-1, 1, 2).copy(),
                                              winSize=win, maxLevel=3, criteria=crit, flags=flag)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self.gray, nxt, pts.reshape(-1, 1, 2).copy(), winSize=win,
                                                maxLevel=3, criteria=crit, flags=flag)
        good = (st.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm(back.reshape(-1, 2) - pts, axis=1) < 1.0)
        if good.sum() < min_points:
            return None
        src, dst = pts[good], nxt.reshape(-1, 2)[good]
        iod = max(interocular(self.landmarks), 1.0)
        if m0 is None:
            return self._fit(src, dst, iod, min_points, int(good.sum()))
        # validation gate: corners whose motion is far from the guess's belong to something else (an occluder
        # moving its own way); when the fit still lands far from the guess, a tighter gate gets one more try
        for g in (gate, gate / 2.5):
            near = np.linalg.norm(dst - (src @ m0[:, :2].T + m0[:, 2]), axis=1) <= max(2.0, g * iod)
            if near.sum() < min_points:
                continue
            res = self._fit(src[near], dst[near], iod, min_points, int(good.sum()))
            if res is not None and np.linalg.norm(res.landmarks - guess, axis=1).mean() <= max_jump * iod:
                return res
        return None

    def _fit(self, src: np.ndarray, dst: np.ndarray, iod: float, min_points: int, tracked: int) -> FlowResult | None:
        m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=max(1.0, 0.03 * iod),
                                             maxIters=2000, confidence=0.995, refineIters=10)
        if m is None or inl is None or int(inl.sum()) < min_points:
            return None
        m = m.astype(np.float64)
        return FlowResult(self.landmarks @ m[:, :2].T + m[:, 2], m, int(inl.sum()), tracked)




class ChainFlow:
    """Carry the landmarks of a keyframe (the track's last detection) into the following frames by the image motion
    of the face, frame to frame: Shi-Tomasi corners inside the keyframe's landmark hull are followed from the
    previous frame to the current one with pyramidal Lucas-Kanade, started where the motion prediction (`guess`)
    puts them, kept when the backward track returns within 1 px; a RANSAC similarity from their keyframe positions
    to their current ones moves the keyframe landmarks, and corners off that motion (an occluder, a lost point) are
    dropped for good. Re-anchoring: each followed corner is also tracked straight from the keyframe, started at its
    chained position, and snapped there when both agree within `anchor_px` (no drift accumulates while the face
    looks as it did). Chaining follows a face that has moved, turned and zoomed since the keyframe, where the
    keyframe's patches no longer match. When fewer than `replenish` x the first count of corners are left (the
    rest went behind an occluder), new corners are taken from the current frame's face region.

    Args:
        gray: [H, W] uint8 keyframe.
        landmarks: [K, 2] keyframe landmarks.
        anchor: re-anchor on the keyframe (see above).
        replenish: fraction of the keyframe's corner count below which corners are topped up (0 = never).
    """

    def __init__(self, gray: np.ndarray, landmarks: np.ndarray, anchor: bool = False, anchor_px: float = 2.0,
                 replenish: float = 0.6) -> None:
        self.gray = gray
        self.replenish = replenish
        self._n0 = 0
        self.landmarks = np.asarray(landmarks, np.float64)
        self.anchor, self.anchor_px = anchor, anchor_px
        self._key_pts: np.ndarray | None = None  # [N, 2] corners in the keyframe
        self._cur: np.ndarray | None = None  # [N, 2] the same corners in `_prev`
        self._prev = gray
        self._m = np.hstack([np.eye(2), np.zeros((2, 1))])  # keyframe -> `_prev`

    def _init(self) -> None:
        self._key_pts = KeyframeFlow(self.gray, self.landmarks)._points()
        self._cur = self._key_pts.copy()
        self._n0 = len(self._key_pts)

    def track(self, gray: np.ndarray, guess: np.ndarray | None = None, min_points: int = 12,
              max_jump: float = 0.15) -> FlowResult | None:
        """Landmarks in `gray` ([H, W] uint8, the frame after the last one tracked or the keyframe), or None when
        too few corners follow one rigid motion (blanked or fully covered face) or the motion lands further than
        `max_jump` inter-ocular distances (mean) from `guess` ([K, 2], the motion prediction); on None the state
        stays at the last good frame, and the next call tracks from there."""
        if self._key_pts is None:
            self._init()
        assert self._key_pts is not None and self._cur is not None
        if len(self._cur) < min_points:
            return None
        iod = max(interocular(self.landmarks), 1.0)
        prev_lm = self.landmarks @ self._m[:, :2].T + self._m[:, 2]
        start = self._cur
        if guess is not None:
            m0 = similarity_fit(prev_lm, guess)
            start = self._cur @ m0[:, :2].T + m0[:, 2]
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        kw = dict(winSize=(21, 21), maxLevel=3, criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        p0 = self._cur.reshape(-1, 1, 2).astype(np.float32)
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(self._prev, gray, p0, start.reshape(-1, 1, 2).astype(np.float32), **kw)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self._prev, nxt, p0.copy(), **kw)
        nxt = nxt.reshape(-1, 2)
        good = (st.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm(back.reshape(-1, 2) - self._cur, axis=1) < 1.0)
        if good.sum() < min_points:
            return None
        key, cur = self._key_pts[good], nxt[good].astype(np.float64)
        if self.anchor:
            pk = key.reshape(-1, 1, 2).astype(np.float32)
            d, sd, _ = cv2.calcOpticalFlowPyrLK(self.gray, gray, pk, cur.reshape(-1, 1, 2).astype(np.float32), **kw)
            db, sdb, _ = cv2.calcOpticalFlowPyrLK(gray, self.gray, d, pk.copy(), **kw)
            d = d.reshape(-1, 2)
            snap = ((sd.ravel() == 1) & (sdb.ravel() == 1) & (np.linalg.norm(db.reshape(-1, 2) - key, axis=1) < 1.0)
                    & (np.linalg.norm(d - cur, axis=1) < self.anchor_px))
            cur[snap] = d[snap]
        m, inl = cv2.estimateAffinePartial2D(key.astype(np.float32), cur.astype(np.float32), method=cv2.RANSAC,
                                             ransacReprojThreshold=max(1.0, 0.03 * iod), maxIters=2000,
                                             confidence=0.995, refineIters=10)
        if m is None or inl is None or int(inl.sum()) < min_points:
            return None
        m = m.astype(np.float64)
        lm = self.landmarks @ m[:, :2].T + m[:, 2]
        if guess is not None and np.linalg.norm(lm - guess, axis=1).mean() > max_jump * iod:
            return None
        keep = inl.ravel() == 1
        self._key_pts, self._cur, self._prev, self._m = key[keep].astype(np.float32), cur[keep], gray, m
        if len(self._cur) < self.replenish * self._n0:
            self._replenish(gray, lm, iod)
        return FlowResult(lm, m, int(keep.sum()), int(good.sum()))

    def _replenish(self, gray: np.ndarray, lm: np.ndarray, iod: float) -> None:
        """Top the corners up from the current frame (inside the current landmark hull, away from the corners still
        followed); their keyframe positions are where the current motion says they came from."""
        assert self._cur is not None and self._key_pts is not None
        mask = np.zeros(gray.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm).astype(np.int32)), 255)
        dist = max(3.0, iod / 20)
        for p in self._cur:
            cv2.circle(mask, (int(round(p[0])), int(round(p[1]))), int(dist), 0, -1)
        new = cv2.goodFeaturesToTrack(gray, maxCorners=max(self._n0 - len(self._cur), 1), qualityLevel=0.01,
                                      minDistance=dist, mask=mask, blockSize=5)
        if new is None:
            return
        new = new.reshape(-1, 2).astype(np.float64)
        a, t = self._m[:, :2], self._m[:, 2]
        key = (new - t) @ np.linalg.inv(a).T
        self._cur = np.concatenate([self._cur, new])
        self._key_pts = np.concatenate([self._key_pts, key.astype(np.float32)])
