"""Labels: place site names on a map so none collides and each is nearest its own marker; move
markers that would cover each other apart first.

Inputs
    Marker positions and label sizes in display units (points or pixels, one unit for all),
    each marker's radius and the frame the labels must stay inside.
Outputs
    Marker positions with no two markers over each other (:func:`spread`); one box
    (x0, y0, x1, y1) per label and whether it breaks a rule (:func:`place_labels`).
    :mod:`pipeline.publish.maps` draws the text there with a leader line to its marker, and
    replaces names that cannot be placed cleanly by numbers explained in a key under the map.

Why not nearest-free-slot placement: with 50 sites on a 89 mm map, a label dropped in the
first free slot can end up beside another site, and a reader then reads the wrong name
for that marker (the Korean column map did). So a candidate is accepted only when the
label is nearer its own marker than any other marker, collides with no placed label and no
marker, and stays inside the frame; the most crowded sites choose first, closest slots first.
Why move markers at all: sites a few kilometres apart are drawn over each other on a column-wide
map, and a marker half hidden under another cannot be told apart, nor can a reader see which
of the two a label's leader line reaches. Each is moved only as far as needed (both of a pair
alike), so most stay over their site; the map ties one moved further back to its site.
Pure geometry, no Matplotlib, so it is tested directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]
ANGLES = np.deg2rad(
    [
        0,
        180,
        45,
        135,
        315,
        225,
        90,
        270,
        22.5,
        157.5,
        337.5,
        202.5,
        67.5,
        112.5,
        292.5,
        247.5,
        11.25,
        168.75,
        348.75,
        191.25,
        33.75,
        146.25,
        326.25,
        213.75,
    ]
)
RESTARTS = 6
GAPS = (
    0.3,
    0.6,
    1.0,
    1.6,
    2.4,
    3.4,
    4.6,
    6.0,
    8.0,
    10.5,
    13.5,
)  # label gap beyond the marker edge, in marker radii


# directions for markers at one place: spread evenly, no randomness
GOLDEN = np.pi * (3 - np.sqrt(5))


Floats = Sequence[float] | np.ndarray


def spread(xs: Floats, ys: Floats, radii: Floats, rounds: int = 200) -> np.ndarray:
    """Marker positions (n, 2) with no two closer than the sum of their radii, each moved as
    little as it takes: every overlapping pair is pushed apart along the line between them, each
    by half the overlap, until none is left (markers at the same place: in golden-angle
    directions). Markers that do not overlap any other keep their place exactly."""
    p = np.column_stack([xs, ys]).astype(float)
    r = np.asarray(radii, float)
    for _ in range(rounds):
        d = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
        close = np.argwhere(np.triu(d < r[:, None] + r[None, :] - 1e-9, 1))
        if not len(close):
            break
        for i, j in close:
            v = p[j] - p[i]
            length = float(np.hypot(*v))
            need = r[i] + r[j]
            if length >= need:
                continue
            u = v / length if length > 1e-9 else np.array([np.cos(GOLDEN * j), np.sin(GOLDEN * j)])
            p[i] -= u * (need - length) / 2
            p[j] += u * (need - length) / 2
    return p


def clusters(xs: Floats, ys: Floats, radii: Floats) -> np.ndarray:
    """A group number per marker: markers overlapping one another at their sites, directly or
    through others, share one (:func:`spread` moves them apart; leader lines tell them apart)."""
    x, y, r = (np.asarray(v, float) for v in (xs, ys, radii))
    group = np.arange(len(x))
    close = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) < r[:, None] + r[None, :]
    for i, j in np.argwhere(np.triu(close, 1)):
        group[group == group[j]] = group[i]
    return group


def box_distance(box: Box, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
    """Distance from a box to points (0 inside the box)."""
    dx = np.maximum(np.maximum(box[0] - x, 0), x - box[2])
    dy = np.maximum(np.maximum(box[1] - y, 0), y - box[3])
    return np.hypot(dx, dy)


def _candidates(x: float, y: float, w: float, h: float, r: float) -> np.ndarray:
    """Every slot (closest gaps first, then angle order) as boxes: each box's nearest point to
    the marker lies one gap away in its direction, on a corner or the middle of a side."""
    gap = np.repeat(r * (1 + np.asarray(GAPS)), len(ANGLES))
    angle = np.tile(ANGLES, len(GAPS))
    c, s = np.cos(angle), np.sin(angle)
    ax, ay = x + gap * c, y + gap * s
    x0 = np.where(c > 0.3, ax, np.where(c < -0.3, ax - w, ax - w / 2))
    y0 = np.where(s > 0.3, ay, np.where(s < -0.3, ay - h, ay - h / 2))
    return np.column_stack([x0, y0, x0 + w, y0 + h])


def _distances(boxes: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(boxes, points) distances from each box to each point."""
    dx = np.maximum(np.maximum(boxes[:, :1] - x, 0), x - boxes[:, 2:3])
    dy = np.maximum(np.maximum(boxes[:, 1:2] - y, 0), y - boxes[:, 3:4])
    return np.hypot(dx, dy)


def _hits(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """How many of ``others`` each box overlaps."""
    if not len(others):
        return np.zeros(len(boxes), int)
    b, o = boxes[:, None, :], others[None, :, :]
    return (
        (b[..., 0] < o[..., 2])
        & (o[..., 0] < b[..., 2])
        & (b[..., 1] < o[..., 3])
        & (o[..., 1] < b[..., 3])
    ).sum(axis=1)


def _best(
    i: int,
    x: np.ndarray,
    y: np.ndarray,
    size: tuple[float, float],
    r: np.ndarray,
    taken: np.ndarray,
    markers: np.ndarray,
    frame: Box,
    margin: float,
    group: np.ndarray,
) -> tuple[Box, int]:
    """The closest slot breaking no rule, else the one breaking the fewest: another marker as
    near as its own counts most, then overlaps with labels and markers, then leaving the frame."""
    boxes = _candidates(x[i], y[i], size[0], size[1], float(r[i]))
    others = np.delete(np.arange(len(x)), i)
    # a marker drawn over this one, or moved off it (one group), cannot be told apart by
    # nearness: the leader line does it
    far = np.hypot(x[others] - x[i], y[others] - y[i]) >= r[i] + r[others]
    apart = others[far & (group[others] != group[i])]
    own = _distances(boxes, x[i : i + 1], y[i : i + 1])[:, 0]
    near = (_distances(boxes, x[apart], y[apart]) <= own[:, None] + margin).sum(axis=1)
    # ... yet among slots breaking as few rules, one nearer its own marker than its group's reads best
    mates = others[group[others] == group[i]]
    near_mates = (_distances(boxes, x[mates], y[mates]) <= own[:, None] + margin).sum(axis=1)
    padded = taken + np.array(
        [-margin, -margin, margin, margin]
    )  # labels never touch: '15' '7' is not '157'
    hits = _hits(boxes, padded) + _hits(boxes, markers[others])
    outside = ~(
        (frame[0] <= boxes[:, 0])
        & (boxes[:, 2] <= frame[2])
        & (frame[1] <= boxes[:, 1])
        & (boxes[:, 3] <= frame[3])
    )
    cost = 10 * near + hits + 10 * outside
    k = int(np.lexsort((near_mates, cost))[0])  # then the closest, best-ranked angle
    x0, y0, x1, y1 = (float(v) for v in boxes[k])
    return (x0, y0, x1, y1), int(cost[k])


def place_labels(
    xs: Sequence[float],
    ys: Sequence[float],
    sizes: Sequence[tuple[float, float]],
    marker_radius: float | Floats,
    frame: Box,
    margin: float = 1.0,
    passes: int = 4,
    groups: Sequence[int] | np.ndarray | None = None,
) -> tuple[list[Box], list[int]]:
    """A box per label: inside ``frame``, overlapping no other label or marker, nearer its own
    marker than any other (by ``margin``; markers overlapping its own are exempt); where no slot meets all three, the slot breaking
    the fewest (nearness first) is taken, so every site keeps a label. The most crowded sites
    choose first; then labels still breaking a rule are placed again among all the others.
    ``marker_radius``: half of each marker's width (or one for all): a square around the marker's
    centre that no other label may enter. ``groups``: markers moved apart from one place
    (:func:`clusters`), exempt from nearness among themselves like markers drawn over each other.
    Returns the boxes and, per label, how badly it breaks the rules (0: not at all)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    n = len(x)
    r = np.broadcast_to(np.asarray(marker_radius, float), (n,))
    group = np.arange(n) if groups is None else np.asarray(groups)
    markers = np.column_stack([x - r, y - r, x + r, y + r]) if n else np.zeros((0, 4))
    crowd = np.array([(np.hypot(x - x[i], y - y[i]) < 12 * r[i]).sum() for i in range(n)])
    boxes: dict[int, Box] = {}
    costs: dict[int, int] = {}

    def taken(skip: int) -> np.ndarray:
        rows = [b for k, b in boxes.items() if k != skip]
        return np.array(rows) if rows else np.zeros((0, 4))

    best: tuple[int, dict[int, Box], dict[int, int]] | None = None
    orders = [
        sorted(range(n), key=lambda k: (-crowd[k], k)),
        sorted(range(n), key=lambda k: (crowd[k], k)),
        sorted(range(n), key=lambda k: (x[k], y[k])),
        sorted(range(n), key=lambda k: (-y[k], x[k])),
    ]
    rng = np.random.default_rng(0)  # then a few fixed shuffles: the same map every run
    orders += [list(rng.permutation(n)) for _ in range(RESTARTS)]
    for order in orders:  # a few greedy orders; keep the placement breaking the fewest rules
        boxes.clear()
        costs.clear()
        for i in order:
            boxes[i], costs[i] = _best(
                i, x, y, sizes[i], r, taken(i), markers, frame, margin, group
            )
        for _ in range(passes):
            bad = [i for i in sorted(boxes, key=lambda k: -costs[k]) if costs[i]]
            if not bad:
                break
            for i in bad:
                boxes[i], costs[i] = _best(
                    i, x, y, sizes[i], r, taken(i), markers, frame, margin, group
                )
        total = sum(costs.values())
        if best is None or total < best[0]:
            best = (total, dict(boxes), dict(costs))
        if total == 0:
            break
    if best is not None:
        boxes, costs = best[1], best[2]
    return [boxes[i] for i in range(n)], [costs[i] for i in range(n)]
