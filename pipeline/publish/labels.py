"""Labels: place site names on a map so none collides and each is nearest its own marker.

Inputs
    Marker positions and label sizes in display units (points or pixels, one unit for all),
    the marker radius and the frame the labels must stay inside.
Outputs
    One box (x0, y0, x1, y1) per label and whether it breaks a rule; :mod:`pipeline.publish.maps`
    draws the text there with a leader line to its marker, and replaces names that cannot be
    placed cleanly by numbers explained in a key under the map.

Why not nearest-free-slot placement: with 50 sites on a 89 mm map, a label dropped in the
first free slot can end up beside another site, and a reader then reads the wrong name
for that marker (the Korean column map did). So a candidate is accepted only when the
label is nearer its own marker than any other marker, collides with no placed label and no
marker, and stays inside the frame; the most crowded sites choose first, closest slots first.
Pure geometry, no Matplotlib, so it is tested directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]
ANGLES = np.deg2rad([0, 180, 45, 135, 315, 225, 90, 270, 22.5, 157.5, 337.5, 202.5, 67.5, 112.5, 292.5, 247.5,
                     11.25, 168.75, 348.75, 191.25, 33.75, 146.25, 326.25, 213.75])
GAPS = (0.3, 0.6, 1.0, 1.6, 2.4, 3.4, 4.6, 6.0, 8.0, 10.5, 13.5)  # label gap beyond the marker edge, in marker radii


def box_distance(box: Box, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
    """Distance from a box to points (0 inside the box)."""
    dx = np.maximum(np.maximum(box[0] - x, 0), x - box[2])
    dy = np.maximum(np.maximum(box[1] - y, 0), y - box[3])
    return np.hypot(dx, dy)


def _box_at(x: float, y: float, w: float, h: float, angle: float, gap: float) -> Box:
    """The box of size w x h whose nearest point to (x, y) lies ``gap`` away in direction ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    ax, ay = x + gap * c, y + gap * s  # the anchor: the point of the box nearest the marker
    x0 = ax if c > 0.3 else ax - w if c < -0.3 else ax - w / 2
    y0 = ay if s > 0.3 else ay - h if s < -0.3 else ay - h / 2
    return (x0, y0, x0 + w, y0 + h)


def _overlaps(box: Box, others: np.ndarray) -> np.ndarray:
    if not len(others):
        return np.zeros(0, bool)
    return (box[0] < others[:, 2]) & (others[:, 0] < box[2]) & (box[1] < others[:, 3]) & (others[:, 1] < box[3])


def _cost(box: Box, i: int, x: np.ndarray, y: np.ndarray, others: np.ndarray, taken: np.ndarray,
          markers: np.ndarray, frame: Box, margin: float) -> int:
    """How badly a box breaks the rules: other markers as near as its own (worst), overlaps, outside."""
    own = float(box_distance(box, x[i], y[i]))
    near = int((box_distance(box, x[others], y[others]) <= own + margin).sum())
    hits = int(_overlaps(box, taken).sum() + _overlaps(box, markers[others]).sum())
    outside = not (frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3])
    return 10 * near + hits + 10 * outside


def _best(i: int, x: np.ndarray, y: np.ndarray, size: tuple[float, float], r: float, taken: np.ndarray,
          markers: np.ndarray, frame: Box, margin: float) -> tuple[Box, int]:
    """The closest slot breaking no rule, else the one breaking the fewest."""
    others = np.delete(np.arange(len(x)), i)
    best, best_cost = None, None
    for k, gap in enumerate(GAPS):
        for j, angle in enumerate(ANGLES):
            box = _box_at(x[i], y[i], size[0], size[1], angle, r * (1 + gap))
            cost = (_cost(box, i, x, y, others, taken, markers, frame, margin), k, j)
            if best_cost is None or cost < best_cost:
                best, best_cost = box, cost
        if best_cost is not None and best_cost[0] == 0:
            break
    return best, best_cost[0]


def place_labels(xs: Sequence[float], ys: Sequence[float], sizes: Sequence[tuple[float, float]],
                 marker_radius: float, frame: Box, margin: float = 1.0, passes: int = 4
                 ) -> tuple[list[Box], list[int]]:
    """A box per label: inside ``frame``, overlapping no other label or marker, nearer its own
    marker than any other (by ``margin``); where no slot meets all three, the slot breaking
    the fewest (nearness first) is taken, so every site keeps a label. The most crowded sites
    choose first; then labels still breaking a rule are placed again among all the others.
    Returns the boxes and, per label, how badly it breaks the rules (0: not at all)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    n = len(x)
    r = float(marker_radius)
    markers = np.column_stack([x - r, y - r, x + r, y + r]) if n else np.zeros((0, 4))
    crowd = np.array([(np.hypot(x - x[i], y - y[i]) < 12 * r).sum() for i in range(n)])
    boxes: dict[int, Box] = {}
    costs: dict[int, int] = {}

    def taken(skip: int) -> np.ndarray:
        rows = [b for k, b in boxes.items() if k != skip]
        return np.array(rows) if rows else np.zeros((0, 4))

    best: tuple[int, dict[int, Box], dict[int, int]] | None = None
    orders = [sorted(range(n), key=lambda k: (-crowd[k], k)), sorted(range(n), key=lambda k: (crowd[k], k)),
              sorted(range(n), key=lambda k: (x[k], y[k])), sorted(range(n), key=lambda k: (-y[k], x[k]))]
    for order in orders:  # a few greedy orders; keep the placement breaking the fewest rules
        boxes.clear()
        costs.clear()
        for i in order:
            boxes[i], costs[i] = _best(i, x, y, sizes[i], r, taken(i), markers, frame, margin)
        for _ in range(passes):
            bad = [i for i in sorted(boxes, key=lambda k: -costs[k]) if costs[i]]
            if not bad:
                break
            for i in bad:
                boxes[i], costs[i] = _best(i, x, y, sizes[i], r, taken(i), markers, frame, margin)
        total = sum(costs.values())
        if best is None or total < best[0]:
            best = (total, dict(boxes), dict(costs))
        if total == 0:
            break
    if best is not None:
        boxes, costs = best[1], best[2]
    return [boxes[i] for i in range(n)], [costs[i] for i in range(n)]
