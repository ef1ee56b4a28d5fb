"""Physics metrics with one definition for everyone (plain numpy, on whole prediction arrays).

Every evaluation, comparison and export check in recoml computes its numbers here, so a CNN and a GNN (or
two detector configurations) are always compared with the same definitions:

* **Selection**: an event (hit) is selected when its score is ``>= threshold``.
* **ROC**: signal efficiency (true-positive rate) against background efficiency (false-positive rate),
  one point per distinct score; **AUC** is the trapezoidal area under it.
* **Background rejection** at a signal efficiency ``e``: ``1 / background efficiency`` at the tightest cut
  that keeps at least a fraction ``e`` of the signal. When no background passes it is a
  :class:`LowerLimit`, ``N_bkg + 1``: the inverse of the Wilson 68.3% upper bound on the background
  efficiency, ``1 / (N_bkg + 1)`` for 0 of ``N_bkg`` (never ``inf``).
* **Pair discriminant** for signal class ``a`` against background class ``b``: ``p_a / (p_a + p_b)``
  on events whose truth is ``a`` or ``b`` (the other classes' probabilities do not enter).
* **Resolution**: the 68% quantile of ``|residual|`` (numpy's linear interpolation), for signed residuals
  (fractional energy, longitudinal vertex) and for magnitudes (angle, transverse and 3D distance) alike;
  it equals ``sigma`` for a centred Gaussian residual. This is also what the training metrics log.
* **Bias**: the mean of the signed residual.
* **Residuals**: energy ``(E_pred - E_true) / E_true``; vertex ``r = v_pred - v_true`` split into
  longitudinal ``r . d_true`` (signed) and transverse ``|r - (r . d_true) d_true|`` to the true direction;
  direction: the angle between predicted and true vectors in degrees.
* **Efficiency in bins**: passed / total per bin with the Wilson score interval (68.3%).
* **Distance to wall** of a cylinder with its axis along y: ``dwall`` to the nearest wall,
  ``towall`` along the direction of travel.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Particle masses (MeV, PDG 2024) and the species of the event store's labels (gamma 0, e 1, mu 2, pi0 3).
ELECTRON_MASS = 0.51099895
MUON_MASS = 105.6583755
PI0_MASS = 134.9768
SPECIES: dict[int, tuple[str, float]] = {
    0: ("gamma", 0.0),
    1: ("e", ELECTRON_MASS),
    2: ("mu", MUON_MASS),
    3: ("pi0", PI0_MASS),
}


def momentum_from_energy(energy: np.ndarray, mass: np.ndarray, kinetic: bool = True) -> np.ndarray:
    """|p| (MeV) from kinetic (``p = sqrt(T^2 + 2 T m)``) or total (``p = sqrt(E^2 - m^2)``) energy; an
    energy below the mass gives 0."""
    e = np.asarray(energy, dtype=np.float64).reshape(-1)
    m = np.asarray(mass, dtype=np.float64).reshape(-1)
    p2 = e * e + 2 * e * m if kinetic else e * e - m * m
    return np.sqrt(np.clip(p2, 0.0, None))


__all__ = [
    "RESOLUTION_QUANTILE",
    "LowerLimit",
    "angle_between",
    "auc",
    "binned_efficiency",
    "binned_resolution",
    "bias",
    "confusion_matrix",
    "distance_to_wall",
    "efficiency_purity",
    "fractional_residual",
    "pair_discriminant",
    "quantile_error",
    "rejection_at_efficiency",
    "resolution",
    "roc_auc",
    "roc_curve",
    "threshold_at_efficiency",
    "towall",
    "vertex_residuals",
    "wilson_interval",
]

#: The fraction of events inside the resolution: 68% (one Gaussian sigma).
RESOLUTION_QUANTILE = 0.68


class LowerLimit(float):
    """A number known only to be at least this value (e.g. a background rejection when no background event
    passes). Behaves as a float; tables print it as ``> value``."""

    def __repr__(self) -> str:
        return f"> {float(self):.4g}"

    __str__ = __repr__


def _binary(scores: np.ndarray, is_signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_signal = np.asarray(is_signal).reshape(-1).astype(bool)
    if scores.shape != is_signal.shape:
        raise ValueError(f"scores {scores.shape} and labels {is_signal.shape} differ in length")
    return scores, is_signal


def roc_curve(scores: np.ndarray, is_signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(background_efficiency, signal_efficiency, thresholds)`` for cuts ``score >= threshold``.

    Thresholds are the distinct scores in decreasing order, preceded by ``+inf`` (nothing selected), so the
    curve runs from ``(0, 0)`` to ``(1, 1)``. Tied scores make one point (no arbitrary tie order).
    A class with no events gives efficiencies of NaN.
    """
    scores, is_signal = _binary(scores, is_signal)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_signal[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, int)
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    n_sig, n_bkg = int(y.sum()), int((~y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / n_sig] if n_sig else np.full(len(tp) + 1, np.nan)
        fpr = np.r_[0.0, fp / n_bkg] if n_bkg else np.full(len(fp) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` (``x`` monotonic)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(scores: np.ndarray, is_signal: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random signal scores above a random background
    (ties count one half). NaN when a class is empty."""
    fpr, tpr, _ = roc_curve(scores, is_signal)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return auc(fpr, tpr)


def threshold_at_efficiency(signal_scores: np.ndarray, efficiency: float) -> float:
    """The largest threshold whose cut ``score >= threshold`` keeps at least ``efficiency`` of the signal.

    That is the ``ceil(efficiency * n)``-th largest signal score (ties may keep a little more).
    """
    if not 0.0 < efficiency <= 1.0:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    s = np.sort(np.asarray(signal_scores, dtype=np.float64).reshape(-1))[::-1]
    if len(s) == 0:
        return float("nan")
    k = int(np.ceil(efficiency * len(s) - 1e-9))
    return float(s[max(k, 1) - 1])


def rejection_at_efficiency(scores: np.ndarray, is_signal: np.ndarray, efficiency: float) -> dict[str, float]:
    """Background rejection ``1 / eps_bkg`` at the tightest cut keeping ``>= efficiency`` of the signal.

    Returns ``threshold``, the achieved ``signal_efficiency``, ``background_efficiency`` and ``rejection``
    (a :class:`LowerLimit` ``N_bkg + 1`` when no background event passes; NaN without background).
    """
    scores, is_signal = _binary(scores, is_signal)
    sig, bkg = scores[is_signal], scores[~is_signal]
    t = threshold_at_efficiency(sig, efficiency)
    eps_s = float(np.mean(sig >= t)) if len(sig) else float("nan")
    eps_b = float(np.mean(bkg >= t)) if len(bkg) else float("nan")
    if eps_b == 0:
        rejection: float = LowerLimit(1.0 / float(wilson_interval(0, len(bkg))[1]))
    else:
        rejection = 1.0 / eps_b if eps_b == eps_b else float("nan")
    return {
        "threshold": t,
        "signal_efficiency": eps_s,
        "background_efficiency": eps_b,
        "rejection": rejection,
    }


def pair_discriminant(probabilities: np.ndarray, signal: int, background: int) -> np.ndarray:
    """``p_signal / (p_signal + p_background)`` per event (0.5 where both are 0)."""
    p = np.asarray(probabilities, dtype=np.float64)
    a, b = p[:, signal], p[:, background]
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, a / np.where(total > 0, total, 1.0), 0.5)


def confusion_matrix(
    true: np.ndarray, predicted: np.ndarray, n_classes: int, normalize: bool = True
) -> np.ndarray:
    """``(n_classes, n_classes)``: row = true class, column = predicted class.

    ``normalize=True`` divides each row by its count (rows of empty classes stay 0): the diagonal is the
    per-class efficiency.
    """
    true = np.asarray(true, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    ok = (true >= 0) & (true < n_classes) & (predicted >= 0) & (predicted < n_classes)
    counts = np.bincount(true[ok] * n_classes + predicted[ok], minlength=n_classes * n_classes)
    matrix = counts.reshape(n_classes, n_classes).astype(np.float64)
    if normalize:
        rows = matrix.sum(1, keepdims=True)
        matrix = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    return matrix


def efficiency_purity(scores: np.ndarray, is_signal: np.ndarray, threshold: float) -> dict[str, float]:
    """At the cut ``score >= threshold``: efficiency (recall) ``TP / (TP + FN)``, purity (precision)
    ``TP / (TP + FP)``, accuracy, and the counts (NaN where a denominator is 0)."""
    scores, is_signal = _binary(scores, is_signal)
    selected = scores >= threshold
    tp = int(np.sum(selected & is_signal))
    fp = int(np.sum(selected & ~is_signal))
    fn = int(np.sum(~selected & is_signal))
    tn = int(np.sum(~selected & ~is_signal))
    nan = float("nan")
    return {
        "efficiency": tp / (tp + fn) if tp + fn else nan,
        "purity": tp / (tp + fp) if tp + fp else nan,
        "accuracy": (tp + tn) / len(scores) if len(scores) else nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def resolution(residual: np.ndarray, q: float = RESOLUTION_QUANTILE) -> float:
    """The 68% quantile of ``|residual|`` (NaN when empty). Equals sigma for a centred Gaussian."""
    r = np.abs(np.asarray(residual, dtype=np.float64).reshape(-1))
    r = r[np.isfinite(r)]
    return float(np.quantile(r, q)) if len(r) else float("nan")


def bias(residual: np.ndarray) -> float:
    """Mean of the signed residual (NaN when empty)."""
    r = np.asarray(residual, dtype=np.float64).reshape(-1)
    r = r[np.isfinite(r)]
    return float(r.mean()) if len(r) else float("nan")


def quantile_error(values: np.ndarray, q: float = RESOLUTION_QUANTILE) -> float:
    """Distribution-free 1-sigma uncertainty of a quantile: half the distance between the order statistics
    at ranks ``n q -+ sqrt(n q (1 - q))`` (NaN for fewer than 2 values)."""
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return float("nan")
    spread = np.sqrt(n * q * (1 - q))
    lo = int(np.clip(np.floor(n * q - spread), 0, n - 1))
    hi = int(np.clip(np.ceil(n * q + spread), 0, n - 1))
    return float((v[hi] - v[lo]) / 2.0)


def _bin_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin number of each value (-1 outside ``[edges[0], edges[-1]]``; the last bin is closed)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = len(edges) - 2
    idx[(x < edges[0]) | (x > edges[-1]) | ~np.isfinite(x)] = -1
    return idx


def wilson_interval(k: ArrayLike, n: ArrayLike, z: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial efficiency ``k / n`` (``z = 1``: 68.3%); NaN where ``n = 0``.

    Unlike ``sqrt(e (1 - e) / n)`` it does not collapse to zero width at efficiencies of 0 or 1.
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + z * z / 2) / (n + z * z)
        half = z / (n + z * z) * np.sqrt(np.clip(k * (n - k) / n, 0, None) + z * z / 4)
        lo = np.where(n > 0, np.clip(centre - half, 0, 1), np.nan)
        hi = np.where(n > 0, np.clip(centre + half, 0, 1), np.nan)
    return lo, hi


def binned_efficiency(x: np.ndarray, passed: np.ndarray, edges: ArrayLike) -> dict[str, np.ndarray]:
    """Fraction of events passing per bin of ``x`` with its Wilson 68.3% interval.

    This is recoml's one binned efficiency (water-Cherenkov and tracking plots alike): returns ``edges``,
    ``centers``, ``efficiency``, ``low``, ``high`` (interval bounds), ``count`` and ``passed``; an empty
    bin has NaN efficiency and NaN bounds (no measurement, not 0).
    """
    bins = np.asarray(edges, dtype=np.float64)
    idx = _bin_of(x, bins)
    passed = np.asarray(passed).reshape(-1).astype(bool)
    nb = len(bins) - 1
    ok = idx >= 0
    n = np.bincount(idx[ok], minlength=nb).astype(np.float64)
    k = np.bincount(idx[ok], weights=passed[ok].astype(np.float64), minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n > 0, k / n, np.nan)
    lo, hi = wilson_interval(k, n)
    return {
        "edges": bins,
        "centers": (bins[1:] + bins[:-1]) / 2,
        "efficiency": eff,
        "low": lo,
        "high": hi,
        "count": n,
        "passed": k,
    }


def binned_resolution(x: np.ndarray, residual: np.ndarray, edges: ArrayLike) -> dict[str, np.ndarray]:
    """Per bin of ``x``: :func:`resolution` (with :func:`quantile_error`) and :func:`bias` (with the error
    of a mean, ``std / sqrt(n)``) of ``residual``. Bins with no event give NaN."""
    bins = np.asarray(edges, dtype=np.float64)
    idx = _bin_of(x, bins)
    residual = np.asarray(residual, dtype=np.float64).reshape(-1)
    nb = len(bins) - 1
    out = {k: np.full(nb, np.nan) for k in ("resolution", "resolution_error", "bias", "bias_error")}
    out["count"] = np.zeros(nb)
    for b in range(nb):
        r = residual[idx == b]
        r = r[np.isfinite(r)]
        out["count"][b] = len(r)
        if len(r) == 0:
            continue
        out["resolution"][b] = resolution(r)
        out["resolution_error"][b] = quantile_error(np.abs(r))
        out["bias"][b] = r.mean()
        out["bias_error"][b] = r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.nan
    out["edges"] = bins
    out["centers"] = (bins[1:] + bins[:-1]) / 2
    return out


def fractional_residual(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(predicted - true) / true``."""
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (p - t) / t


def _vectors(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v.reshape(len(v), -1)


def angle_between(a: np.ndarray, b: np.ndarray, degrees: bool = True) -> np.ndarray:
    """Angle between row vectors (any lengths), ``atan2(|a x b|, a . b)``: accurate at small angles too."""
    a, b = _vectors(a), _vectors(b)
    angle = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.sum(a * b, axis=1))
    return np.degrees(angle) if degrees else angle


def vertex_residuals(
    predicted: np.ndarray, true: np.ndarray, direction: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``total`` ``|v_pred - v_true|``; with the true ``direction`` also ``longitudinal`` (signed, along
    the direction) and ``transverse`` (distance perpendicular to it), all in the input's units."""
    r = _vectors(predicted) - _vectors(true)
    out = {"total": np.linalg.norm(r, axis=1), "x": r[:, 0], "y": r[:, 1], "z": r[:, 2]}
    if direction is not None:
        d = _vectors(direction)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        longitudinal = np.sum(r * d, axis=1)
        out["longitudinal"] = longitudinal
        out["transverse"] = np.linalg.norm(r - longitudinal[:, None] * d, axis=1)
    return out


def distance_to_wall(vertex: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """``dwall``: distance from each vertex to the nearest wall of a cylinder (axis y), negative outside."""
    v = _vectors(vertex)
    rho = np.hypot(v[:, 0], v[:, 2])
    return np.minimum(radius - rho, half_height - np.abs(v[:, 1]))


def towall(vertex: np.ndarray, direction: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """``towall``: distance along each (unit) direction from an inside vertex to the cylinder wall
    (axis y); 0 for vertices outside."""
    o = _vectors(vertex)
    d = _vectors(direction)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius**2
    with np.errstate(divide="ignore", invalid="ignore"):
        safe_a = np.where(a > 1e-12, a, 1.0)
        t_barrel = np.where(a > 1e-12, (np.sqrt(np.maximum(b * b - a * c, 0.0)) - b) / safe_a, np.inf)
        safe_dy = np.where(d[:, 1] != 0, d[:, 1], 1.0)
        t_cap = np.where(d[:, 1] != 0, (np.copysign(half_height, d[:, 1]) - o[:, 1]) / safe_dy, np.inf)
    inside = (c <= 0) & (np.abs(o[:, 1]) <= half_height)
    return np.where(inside, np.maximum(np.minimum(t_barrel, t_cap), 0.0), 0.0)
