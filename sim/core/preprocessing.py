"""Column-wise preprocessing of training features, JSON-serialisable.

Every fast model of Mambah sees its inputs (and, for generators, its targets)
through a :class:`Preprocessor`.  The fitted parameters are plain lists of floats
(:meth:`Preprocessor.to_dict`), written to the model's JSON sidecar, so that the
simulation can apply them with numpy only.

:class:`QuantileGaussian` is the Lamarr transform: each column is mapped to a
standard normal through its empirical quantiles.  It is the logic of
``sklearn.preprocessing.QuantileTransformer(output_distribution="normal")``,
reimplemented in numpy so that the stored ``quantiles`` and ``references`` arrays
are all there is to it (and so that sample weights can enter the quantiles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from scipy.special import ndtr, ndtri

from mambah.errors import DataError, ModelError

__all__ = (
    "Preprocessor",
    "Identity",
    "Standardizer",
    "QuantileGaussian",
    "ConditionalQuantileGaussian",
    "compiled_inverse",
    "inverse_transform",
    "transform",
    "preprocessor_from_dict",
)

#: Probabilities are clipped to [BOUND, 1 - BOUND] before ``ndtri`` (as sklearn does),
#: so transformed values stay within about +-5.2.
BOUND = 1e-7

#: Calls of :meth:`QuantileGaussian.transform`, :meth:`QuantileGaussian.inverse_transform` and
#: :meth:`ConditionalQuantileGaussian.inverse_transform` on at least this many values run
#: the compiled loops of :mod:`sim.core._quantile_kernels` (the same numbers bit for bit);
#: smaller ones run the numpy steps, so a small run never imports numba (≈ 0.5 CPU s with
#: the kernels' cache).
COMPILED_MIN_VALUES = 32_768

#: Knots of the largest table the compiled loops take (:data:`sim.core._quantile_kernels.KNOTS`, repeated
#: here so that the check imports no numba); larger tables run the numpy steps.
_KNOTS = 1024


def _kernels() -> Any:
    """:mod:`sim.core._quantile_kernels` (numba), imported on first use."""
    from sim.core import _quantile_kernels

    return _quantile_kernels


def _compiled(fast: np.ndarray, n_features: int, references: np.ndarray) -> bool:
    """Whether a transform of the C-contiguous float64 ``fast`` runs the compiled loops: at least
    :data:`COMPILED_MIN_VALUES` values, the fitted number of columns, a table of 2 to ``_KNOTS`` knots."""
    return fast.size >= COMPILED_MIN_VALUES and fast.shape[1] == n_features and 2 <= np.size(references) <= _KNOTS


def _contiguous_2d(x: np.ndarray) -> np.ndarray | None:
    """``x`` as a C-contiguous float64 ``(n, d)`` array for the compiled loops, or ``None`` (another shape)."""
    arr = np.asarray(x, dtype=np.float64)
    return np.ascontiguousarray(arr) if arr.ndim == 2 else None


@runtime_checkable
class Preprocessor(Protocol):
    """What the training library needs of a column-wise transform of ``(n, d)`` arrays."""

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> Preprocessor:
        """Fit on ``x`` of shape ``(n, d)``; returns ``self``."""

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map ``(n, d)`` raw values to ``(n, d)`` model values."""

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Map ``(n, d)`` model values back to raw values."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters; ``preprocessor_from_dict`` inverts it."""


def _as_2d(x: np.ndarray, what: str, n_features: int | None = None) -> np.ndarray:
    """Return ``x`` as a float64 ``(n, d)`` array, refusing NaN/inf and a wrong width."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{what}: expected an (n, d) array, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"{what}: expected {n_features} columns (as fitted), got {arr.shape[1]}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = sorted(set(np.nonzero(bad)[1].tolist()))
        raise DataError(f"{what}: NaN or inf in column(s) {cols}")
    return arr


def _check_weights(weights: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise DataError(f"{what}: {w.shape[0]} weights for {n} rows")
    if not np.all(np.isfinite(w)):
        raise DataError(f"{what}: weights hold NaN or inf")
    return w


class _Base:
    """Shared fitted-state check and ``from_dict`` dispatch for the concrete classes."""

    kind: ClassVar[str] = ""
    n_features_: int | None = None

    def _fitted(self) -> int:
        if self.n_features_ is None:
            raise ModelError(f"{type(self).__name__} is not fitted; call fit(x) first")
        return self.n_features_

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild from :meth:`to_dict` output; wrong ``type`` gives ``ModelError``."""
        obj = preprocessor_from_dict(data)
        if not isinstance(obj, cls):
            raise ModelError(f"preprocessing of type {data.get('type')!r} is not {cls.kind!r}")
        return obj


class Identity(_Base):
    """No-op transform (``to_dict`` keeps the width so shapes are still checked)."""

    kind = "identity"

    def __init__(self, n_features: int | None = None) -> None:
        self.n_features_ = n_features

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> Identity:
        self.n_features_ = _as_2d(x, "Identity.fit").shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return _as_2d(x, "Identity.transform", self._fitted())

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        return _as_2d(z, "Identity.inverse_transform", self._fitted())

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "n_features": self._fitted()}


class Standardizer(_Base):
    """``(x - mean) / std`` per column, weighted mean and std when weights are given."""

    kind = "standardizer"

    def __init__(self) -> None:
        self.mean_: Any = None
        self.scale_: Any = None

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> Standardizer:
        arr = _as_2d(x, "Standardizer.fit")
        w = _check_weights(weights, arr.shape[0], "Standardizer.fit")
        if w is None:
            w = np.ones(arr.shape[0])
        if w.sum() <= 0:
            raise DataError("Standardizer.fit: sum of weights is not positive")
        mean = np.average(arr, axis=0, weights=w)
        var = np.average((arr - mean) ** 2, axis=0, weights=w)
        scale = np.sqrt(np.clip(var, 0.0, None))
        self.mean_, self.scale_ = mean, np.where(scale > 0, scale, 1.0)
        self.n_features_ = arr.shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        arr = _as_2d(x, "Standardizer.transform", self._fitted())
        return (arr - self.mean_) / self.scale_

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        arr = _as_2d(z, "Standardizer.inverse_transform", self._fitted())
        return arr * self.scale_ + self.mean_

    def to_dict(self) -> dict[str, Any]:
        self._fitted()
        return {"type": self.kind, "mean": self.mean_.tolist(), "scale": self.scale_.tolist()}


class QuantileGaussian(_Base):
    """Map each column to a standard normal through its (weighted) empirical quantiles.

    ``fit`` stores, per column, the values ``quantiles_[:, j]`` at the cumulative
    probabilities ``references_`` (``n_quantiles`` points on [0, 1]).  ``transform``
    interpolates the probability of each value (averaging the forward and backward
    interpolation, as sklearn does, so repeated quantiles of discrete columns map to
    their middle) and applies the normal quantile function; values outside the fitted
    range are clipped to the edge (about +-5.2 sigma).  ``inverse_transform`` runs the
    chain backwards, so generator outputs are bounded by the training range.

    Weights: with ``weights`` the quantiles are those of the weighted distribution.
    Negative weights (sWeights) are clipped to zero for the quantiles only: the
    transform needs a monotone CDF, and the positive-weighted mass spans the support of
    the signal.  (The losses in :mod:`sim.training.gan` do use the signed weights.)

    Args:
        n_quantiles: number of quantile points (capped at the number of rows).
    """

    kind = "quantile_gaussian"

    def __init__(self, n_quantiles: int = 1000) -> None:
        if int(n_quantiles) < 2:
            raise DataError(f"QuantileGaussian: n_quantiles={n_quantiles} must be >= 2")
        self.n_quantiles = int(n_quantiles)
        self.quantiles_: Any = None
        self.references_: Any = None

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> QuantileGaussian:
        """Fit on ``x`` of shape ``(n, d)``, optional per-row ``weights`` of shape ``(n,)``."""
        arr = _as_2d(x, "QuantileGaussian.fit")
        n, d = arr.shape
        if n < 2:
            raise DataError(f"QuantileGaussian.fit: need at least 2 rows, got {n}")
        w = _check_weights(weights, n, "QuantileGaussian.fit")
        refs = np.linspace(0.0, 1.0, min(self.n_quantiles, n))
        if w is None:
            quantiles = np.quantile(arr, refs, axis=0)
        else:
            w = np.clip(w, 0.0, None)
            if np.count_nonzero(w) < 2:
                raise DataError("QuantileGaussian.fit: fewer than 2 rows with positive weight")
            quantiles = np.empty((refs.size, d))
            for j in range(d):  # loop over columns only
                order = np.argsort(arr[:, j], kind="stable")
                xs, ws = arr[order, j], w[order]
                keep = ws > 0
                xs, ws = xs[keep], ws[keep]
                cdf = np.cumsum(ws)
                cdf = (cdf - 0.5 * ws - 0.5 * ws[0]) / (cdf[-1] - 0.5 * ws[-1] - 0.5 * ws[0])
                quantiles[:, j] = np.interp(refs, cdf, xs)
        # Enforce monotonicity against round-off, as sklearn does.
        self.quantiles_ = np.maximum.accumulate(quantiles, axis=0)
        self.references_ = refs
        self.n_features_ = d
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(n, d)`` raw values → ``(n, d)`` standard-normal values.

        Calls of at least :data:`COMPILED_MIN_VALUES` values on tables of up to
        :data:`sim.core._quantile_kernels.KNOTS` knots run the compiled loop
        :func:`sim.core._quantile_kernels.qg_forward` (the same numbers bit for bit, a C-ordered
        result); smaller ones the numpy steps below.
        """
        fast = _contiguous_2d(x)
        if fast is not None and _compiled(fast, self._fitted(), self.references_):
            out = np.empty_like(fast)
            if _kernels().qg_forward(fast, *self._forward_tables(), BOUND, out) < 0:
                return ndtri(out, out=out)  # type: ignore[no-any-return]
        arr = _as_2d(x, "QuantileGaussian.transform", self._fitted())  # the numpy steps (and their errors)
        q, r = self.quantiles_, self.references_
        out = np.empty((arr.shape[1], arr.shape[0]))  # column by column, each contiguous
        for j in range(arr.shape[1]):
            col = np.ascontiguousarray(arr[:, j])
            out[j] = np.interp(col, q[:, j], r)
            tie = self._tie_points(j)
            if tie is not None:  # a value on a repeated quantile: the middle of its probability run
                values, middle = tie
                if values.size <= 4:
                    for v, mid in zip(values.tolist(), middle.tolist()):
                        out[j][col == v] = mid
                else:
                    k = np.minimum(np.searchsorted(values, col), values.size - 1)
                    on = values[k] == col
                    out[j][on] = middle[k[on]]
        np.clip(out, BOUND, 1.0 - BOUND, out=out)
        return ndtri(out, out=out).T  # type: ignore[no-any-return]

    def _tie_points(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The repeated quantiles of column ``j`` and the middle of each one's probability run, or ``None``.

        ``transform`` averages, as sklearn does, the forward interpolation (at a repeated
        quantile ``v``: the reference of its last occurrence, ``r[last]``) and the backward one
        (``r[first]``).  Elsewhere the two are the same straight line evaluated from its two
        ends, equal to round-off (≲ 1e-16, below the float32 the networks read): the forward
        one alone is used there, and at the repeated quantiles ``0.5 (r[last] + r[first])``,
        the average's exact value.  (Before issue #19 both interpolations ran on every value.)
        """
        if not self._ties(j):
            return None
        if getattr(self, "_tie_points_of", None) is not self.quantiles_:
            q, r = np.asarray(self.quantiles_, dtype=np.float64), np.asarray(self.references_, dtype=np.float64)
            points: list[tuple[np.ndarray, np.ndarray] | None] = []
            for c in range(q.shape[1]):
                qc = q[:, c]
                values = np.unique(qc[:-1][np.diff(qc) <= 0])
                first = np.searchsorted(qc, values, side="left")
                last = np.searchsorted(qc, values, side="right") - 1
                points.append((values, 0.5 * (r[last] + r[first])) if values.size else None)
            self._tie_points_cache = points
            self._tie_points_of = self.quantiles_
        return self._tie_points_cache[j]

    def _ties(self, j: int) -> bool:
        """Whether column ``j`` has repeated quantiles (a discrete column), cached per fitted table."""
        if getattr(self, "_ties_of", None) is not self.quantiles_:
            self._ties_cache = np.any(np.diff(np.asarray(self.quantiles_), axis=0) <= 0, axis=0)
            self._ties_of = self.quantiles_
        return bool(self._ties_cache[j])

    def _forward_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`sim.core._quantile_kernels.qg_forward`'s tables, cached per fitted table."""
        if getattr(self, "_forward_of", None) is not self.quantiles_:
            self._forward_cache = _kernels().forward_tables(self.quantiles_, self.references_)
            self._forward_of = self.quantiles_
        return self._forward_cache  # type: ignore[no-any-return]

    def _tables(self) -> tuple[Any, ...]:
        """:func:`sim.core._quantile_kernels.qg_inverse`'s tables, cached per fitted table: the quantiles
        ``(d, m)``, the references padded, ``m``."""
        if getattr(self, "_tables_of", None) is not self.quantiles_:
            r = np.asarray(self.references_, dtype=np.float64)
            self._tables_cache = (np.ascontiguousarray(np.asarray(self.quantiles_, dtype=np.float64).T),
                                  _kernels().padded(r), int(r.size))
            self._tables_of = self.quantiles_
        return self._tables_cache

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """``(n, d)`` standard-normal values → ``(n, d)`` raw values."""
        fast = _contiguous_2d(z)
        if fast is not None and _compiled(fast, self._fitted(), self.references_):
            out = np.empty_like(fast)
            if _kernels().qg_inverse(fast, ndtr(fast), *self._tables(), BOUND, out) < 0:
                return out
        arr = _as_2d(z, "QuantileGaussian.inverse_transform", self._fitted())  # the numpy steps (and their errors)
        p = np.clip(ndtr(arr), BOUND, 1.0 - BOUND)
        q, r = self.quantiles_, self.references_
        out = np.empty_like(arr)
        for j in range(arr.shape[1]):
            out[:, j] = np.interp(p[:, j], r, q[:, j])
        return out

    def to_dict(self) -> dict[str, Any]:
        self._fitted()
        return {
            "type": self.kind,
            "n_quantiles": self.n_quantiles,
            "references": self.references_.tolist(),
            "quantiles": self.quantiles_.tolist(),
        }


class ConditionalQuantileGaussian(_Base):
    """Quantile-Gaussian transform of the targets that follows one raw condition (e.g. momentum).

    The rows are split into ``n_bins`` equal-population bins of condition column
    ``condition``; each bin gets weighted quantile tables ``Q_k(u)`` of the targets on
    a shared probability grid, anchored at the bin's median condition ``c_k``.  For a
    row with condition ``c`` between ``c_k`` and ``c_k+1`` the quantile function is the
    linear interpolation ``Q_c(u) = (1 - a) Q_k(u) + a Q_k+1(u)``, ``a = (c - c_k) /
    (c_k+1 - c_k)`` (clamped to the first/last bin outside), which is monotone in ``u``
    and continuous in ``c``.  ``transform`` maps ``x`` to ``ndtri(Q_c^-1(x))`` and
    ``inverse_transform`` maps ``z`` to ``Q_c(ndtr(z))``, so generated values stay
    inside the range the targets take *at that condition*: sharp, condition-dependent
    edges (a DLL below a Cherenkov threshold is bounded by the other hypothesis'
    expected photon yield) are kept instead of being smeared by the network.

    ``fit``, ``transform`` and ``inverse_transform`` take the raw conditions ``(n, c)``
    (``conditional = True`` tells callers to pass them).  Negative weights are clipped
    to zero for the quantiles, as in :class:`QuantileGaussian`.

    Two options shape it to a threshold (the proton RICH targets, :mod:`sim.training.recipes.pid`):

    * ``edges`` (raw condition values, e.g. a Cherenkov threshold [MeV]): the bins are
      equal-population *within* each segment between the edges (the ``n_bins`` shared
      in proportion to the segments' rows, at least one each), and the interpolation
      never crosses an edge: each segment's outermost tables are repeated at the edge
      (two anchors at the same condition), so a row uses the tables of its own segment
      only and the quantile function may jump at the edge.  A value that is exact in
      every row of a segment (a point mass) is then generated exactly there.
    * ``differences`` (pairs ``(j, b)``): column ``j`` is transformed as ``x_j - x_b``
      (``b`` itself not a difference), and ``inverse_transform`` adds ``x_b`` back, so
      where the difference is exactly 0 (two likelihood hypotheses both below their
      Cherenkov thresholds) the generated ``x_j`` equals ``x_b`` exactly.

    Args:
        n_quantiles: points of each bin's quantile table.
        n_bins: number of bins (equal numbers of rows; with fewer than ``n_quantiles`` rows
            per bin the tables get as many points as the smallest bin has rows).
        condition: index of the condition column that the transform follows.
        edges: increasing raw condition values where the interpolation stops (default none).
        differences: ``(j, b)`` pairs of target columns, ``x_j`` stored as ``x_j - x_b``.
    """

    kind = "conditional_quantile_gaussian"
    conditional: ClassVar[bool] = True

    def __init__(self, n_quantiles: int = 128, n_bins: int = 12, condition: int = 0,
                 edges: Sequence[float] = (), differences: Sequence[Sequence[int]] = ()) -> None:
        if int(n_quantiles) < 2 or int(n_bins) < 1:
            raise DataError(f"ConditionalQuantileGaussian: n_quantiles={n_quantiles} must be >= 2, n_bins={n_bins} >= 1")
        self.n_quantiles = int(n_quantiles)
        self.n_bins = int(n_bins)
        self.condition = int(condition)
        self.edges = tuple(float(e) for e in edges)
        if not all(np.isfinite(self.edges)) or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise DataError(f"ConditionalQuantileGaussian: edges={list(self.edges)} must be finite and increasing")
        self.differences = tuple((int(j), int(b)) for j, b in differences)
        targets = [j for j, _ in self.differences]
        if (len(set(targets)) != len(targets) or any(j == b or b in targets or min(j, b) < 0
                                                     for j, b in self.differences)):
            raise DataError(f"ConditionalQuantileGaussian: differences={[list(d) for d in self.differences]} must be "
                            "(column, base) pairs of distinct columns >= 0, each column once, no base a difference")
        self.centers_: Any = None
        self.references_: Any = None
        self.quantiles_: Any = None  # (n_bins, n_quantiles, d)

    def _column(self, conditions: np.ndarray | None, n: int, what: str) -> np.ndarray:
        if conditions is None:
            raise ModelError(f"{what}: this preprocessing needs the raw conditions")
        c = np.asarray(conditions, dtype=np.float64)
        c = c[:, None] if c.ndim == 1 else c
        if c.ndim != 2 or c.shape[0] != n or c.shape[1] <= self.condition:
            raise DataError(f"{what}: conditions of shape {c.shape} for {n} rows; the transform follows column {self.condition}")
        return c[:, self.condition]

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None,
            conditions: np.ndarray | None = None) -> ConditionalQuantileGaussian:
        """Fit on targets ``x`` ``(n, d)`` with the raw ``conditions`` ``(n, c)`` and optional ``weights``."""
        arr = _as_2d(x, "ConditionalQuantileGaussian.fit")
        n, d = arr.shape
        if any(max(jb) >= d for jb in self.differences):
            raise DataError(f"ConditionalQuantileGaussian.fit: differences={[list(jb) for jb in self.differences]} "
                            f"name a column beyond the {d} target(s)")
        arr = self._differenced(arr)
        w = _check_weights(weights, n, "ConditionalQuantileGaussian.fit")
        col = self._column(conditions, n, "ConditionalQuantileGaussian.fit")
        order = np.argsort(col, kind="stable")
        # segments between the edges (an edge with no row on one side is no edge)
        cuts = np.searchsorted(col[order], np.asarray(self.edges, dtype=np.float64), side="left")
        kept = [(i, s) for i, s in enumerate(np.split(order, cuts)) if s.size]
        segments = [s for _, s in kept]
        # the edge below each kept segment (the one closest to it when segments between are empty)
        below = [self.edges[i - 1] if i > 0 else -np.inf for i, _ in kept]
        shares = [max(1, int(round(self.n_bins * s.size / n))) for s in segments]
        chunks_by_segment = [np.array_split(s, k) for s, k in zip(segments, shares)]
        smallest = min(len(ch) for chunks in chunks_by_segment for ch in chunks)
        if smallest < 2:
            raise DataError(f"ConditionalQuantileGaussian.fit: {n} rows are too few for {self.n_bins} bins"
                            + (f" between the edges {list(self.edges)}" if self.edges else ""))
        points = min(self.n_quantiles, smallest)  # one probability grid for every bin
        tables: list[np.ndarray] = []
        centers: list[float] = []
        for i, chunks in enumerate(chunks_by_segment):
            seg_tables, seg_centers = [], []
            for rows in chunks:
                qg = QuantileGaussian(points).fit(arr[rows], None if w is None else w[rows])
                seg_tables.append(qg.quantiles_)
                seg_centers.append(float(np.median(col[rows])))
            if i > 0:  # the segment's first table from its lower edge on: no interpolation across it
                seg_tables.insert(0, seg_tables[0])
                seg_centers.insert(0, float(below[i]))
            if i < len(chunks_by_segment) - 1:  # and its last table up to its upper edge
                seg_tables.append(seg_tables[-1])
                seg_centers.append(float(below[i + 1]))
            tables.extend(seg_tables)
            centers.extend(seg_centers)
        self.references_ = qg.references_
        self.quantiles_ = np.stack(tables)
        self.centers_ = np.maximum.accumulate(np.asarray(centers))
        self.n_features_ = d
        return self

    def _differenced(self, x: np.ndarray) -> np.ndarray:
        """Raw targets with each difference column replaced by ``x_j - x_b``."""
        if not self.differences:
            return x
        out = np.array(x, dtype=np.float64, copy=True)
        for j, b in self.differences:
            out[:, j] = x[:, j] - x[:, b]
        return out

    def _undifferenced(self, y: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_differenced` (in place)."""
        for j, b in self.differences:
            y[:, j] = y[:, j] + y[:, b]
        return y

    def _neighbours(self, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower bin index and interpolation weight ``a`` in [0, 1] per row."""
        c = self.centers_
        if c.size == 1:
            return np.zeros(col.size, np.int64), np.zeros(col.size)
        k = np.clip(np.searchsorted(c, col, side="right") - 1, 0, c.size - 2)
        span = c[k + 1] - c[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(span > 0, (col - c[k]) / span, 0.0)
        return k, np.clip(a, 0.0, 1.0)

    def transform(self, x: np.ndarray, conditions: np.ndarray | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """``(n, d)`` raw values (with their raw conditions) → standard-normal values.

        A value repeated in the row's table (a point mass, e.g. a difference that is exactly
        0 below a threshold) maps to the middle of its probability run; with ``rng`` it maps
        to a uniform random point of the run instead (dequantisation, for training targets:
        the point mass is then a standard normal in the model's space, like its
        neighbourhood, and the inverse still gives the exact value).
        """
        arr = self._differenced(_as_2d(x, "ConditionalQuantileGaussian.transform", self._fitted()))
        k, a = self._neighbours(self._column(conditions, arr.shape[0], "ConditionalQuantileGaussian.transform"))
        r = self.references_
        out = np.empty_like(arr)
        for kk in np.unique(k):
            rows = np.flatnonzero(k == kk)
            lo, hi = self.quantiles_[kk], self.quantiles_[min(kk + 1, len(self.quantiles_) - 1)]
            for start in range(0, rows.size, 4096):  # (rows, n_quantiles) tables, in chunks
                rr = rows[start : start + 4096]
                aa = a[rr, None]
                for j in range(arr.shape[1]):
                    table = (1.0 - aa) * lo[None, :, j] + aa * hi[None, :, j]
                    xv = arr[rr, j, None]
                    # probability by linear interpolation in the row's table, averaging the
                    # first and last matching grid points (ties of discrete values map to the middle)
                    below = np.clip((table < xv).sum(axis=1), 1, r.size - 1)
                    upto = np.clip((table <= xv).sum(axis=1), 1, r.size - 1)
                    probs = []
                    for idx in (below, upto):
                        t0 = np.take_along_axis(table, (idx - 1)[:, None], 1)[:, 0]
                        t1 = np.take_along_axis(table, idx[:, None], 1)[:, 0]
                        with np.errstate(divide="ignore", invalid="ignore"):
                            f = np.where(t1 > t0, (xv[:, 0] - t0) / (t1 - t0), 0.5)
                        probs.append(r[idx - 1] + np.clip(f, 0.0, 1.0) * (r[idx] - r[idx - 1]))
                    if rng is None:
                        out[rr, j] = 0.5 * (probs[0] + probs[1])
                    else:
                        out[rr, j] = probs[0] + rng.random(rr.size) * (probs[1] - probs[0])
        return ndtri(np.clip(out, BOUND, 1.0 - BOUND))

    def inverse_transform(self, z: np.ndarray, conditions: np.ndarray | None = None) -> np.ndarray:
        """``(n, d)`` standard-normal values (with the raw conditions) → raw values."""
        fast = _contiguous_2d(z)
        if fast is not None and _compiled(fast, self._fitted(), self.references_):
            k, a = self._neighbours(self._column(conditions, fast.shape[0], "ConditionalQuantileGaussian.inverse_transform"))
            if getattr(self, "_tables_of", None) is not self.quantiles_:
                r = np.asarray(self.references_, dtype=np.float64)
                self._tables_cache = (_kernels().padded(r), int(r.size),
                                      np.ascontiguousarray(np.asarray(self.quantiles_, np.float64).transpose(0, 2, 1)))
                self._tables_of = self.quantiles_
            out = np.empty_like(fast)
            if _kernels().cqg_inverse(fast, ndtr(fast), k.astype(np.int64), np.asarray(a, np.float64),
                                      *self._tables_cache, BOUND, out) < 0:
                return self._undifferenced(out)
        arr = _as_2d(z, "ConditionalQuantileGaussian.inverse_transform", self._fitted())  # the numpy steps (and their errors)
        k, a = self._neighbours(self._column(conditions, arr.shape[0], "ConditionalQuantileGaussian.inverse_transform"))
        p = np.clip(ndtr(arr), BOUND, 1.0 - BOUND)
        r = self.references_
        out = np.empty_like(arr)
        for kk in np.unique(k):
            rows = np.flatnonzero(k == kk)
            lo, hi = self.quantiles_[kk], self.quantiles_[min(kk + 1, len(self.quantiles_) - 1)]
            for j in range(arr.shape[1]):
                out[rows, j] = ((1.0 - a[rows]) * np.interp(p[rows, j], r, lo[:, j])
                                + a[rows] * np.interp(p[rows, j], r, hi[:, j]))
        return self._undifferenced(out)

    def to_dict(self) -> dict[str, Any]:
        self._fitted()
        options: dict[str, Any] = {}  # only when set: a transform without them keeps its old form
        if self.edges:
            options["edges"] = list(self.edges)
        if self.differences:
            options["differences"] = [list(jb) for jb in self.differences]
        return {
            "type": self.kind, "n_quantiles": self.n_quantiles, "n_bins": self.n_bins,
            "condition": self.condition, **options, "centers": self.centers_.tolist(),
            "references": self.references_.tolist(), "quantiles": self.quantiles_.tolist(),
        }


def inverse_transform(prep: Any, z: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """``prep.inverse_transform(z)``, passing the raw ``conditions`` to a conditional preprocessing."""
    return prep.inverse_transform(z, conditions) if getattr(prep, "conditional", False) else prep.inverse_transform(z)


def transform(prep: Any, x: np.ndarray, conditions: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``prep.transform(x)``, passing the raw ``conditions`` (and ``rng``, see
    :meth:`ConditionalQuantileGaussian.transform`) to a conditional preprocessing."""
    if not getattr(prep, "conditional", False):
        return prep.transform(x)
    return prep.transform(x, conditions) if rng is None else prep.transform(x, conditions, rng)


def preprocessor_from_dict(
    data: Mapping[str, Any],
) -> Identity | Standardizer | QuantileGaussian | ConditionalQuantileGaussian:
    """Rebuild a fitted preprocessor from its :meth:`to_dict` form.

    Raises:
        ModelError: unknown ``type`` or malformed parameters.
    """
    kinds = {c.kind: c for c in (Identity, Standardizer, QuantileGaussian, ConditionalQuantileGaussian)}
    kind = data.get("type") if isinstance(data, Mapping) else None
    if kind not in kinds:
        raise ModelError(f"unknown preprocessing type {kind!r}; known: {sorted(kinds)}")
    try:
        if kind == Identity.kind:
            return Identity(int(data["n_features"]))
        if kind == Standardizer.kind:
            obj = Standardizer()
            obj.mean_ = np.asarray(data["mean"], dtype=np.float64).reshape(-1)
            obj.scale_ = np.asarray(data["scale"], dtype=np.float64).reshape(-1)
            if obj.mean_.shape != obj.scale_.shape:
                raise ValueError("mean and scale differ in length")
            obj.n_features_ = obj.mean_.size
            return obj
        if kind == ConditionalQuantileGaussian.kind:
            cq = ConditionalQuantileGaussian(int(data["n_quantiles"]), int(data["n_bins"]), int(data["condition"]),
                                             edges=data.get("edges", ()), differences=data.get("differences", ()))
            cq.centers_ = np.asarray(data["centers"], dtype=np.float64).reshape(-1)
            cq.references_ = np.asarray(data["references"], dtype=np.float64).reshape(-1)
            cq.quantiles_ = np.asarray(data["quantiles"], dtype=np.float64)
            if cq.quantiles_.ndim != 3 or cq.quantiles_.shape[:2] != (cq.centers_.size, cq.references_.size):
                raise ValueError(f"quantiles shape {cq.quantiles_.shape} vs {cq.centers_.size} bins "
                                 f"x {cq.references_.size} references")
            cq.n_features_ = cq.quantiles_.shape[2]
            if any(max(jb) >= cq.n_features_ for jb in cq.differences):
                raise ValueError(f"differences {data.get('differences')} beyond the {cq.n_features_} columns")
            return cq
        qg = QuantileGaussian(int(data["n_quantiles"]))
        refs = np.asarray(data["references"], dtype=np.float64).reshape(-1)
        quant = np.asarray(data["quantiles"], dtype=np.float64)
        if quant.ndim != 2 or quant.shape[0] != refs.size:
            raise ValueError(f"quantiles shape {quant.shape} vs {refs.size} references")
        qg.references_, qg.quantiles_, qg.n_features_ = refs, quant, quant.shape[1]
        return qg
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"malformed {kind!r} preprocessing parameters: {err}") from err


# --------------------------------------------------------------------------- compiled (TensorFlow) forms


class _TFTable:
    """Per-column interpolation tables ``xp``, ``fp`` ``(d, m)`` as flat TensorFlow constants.

    ``np.interp(x, xp[j], fp[j])`` is ``fp[i] + slope[i] (x - xp[i])`` on the interval
    ``i`` that holds ``x`` (numpy's arithmetic, with the slopes computed once here).
    """

    def __init__(self, tf: Any, xp: np.ndarray, fp: np.ndarray) -> None:
        d, m = xp.shape
        xp, fp = np.asarray(xp, np.float64), np.asarray(fp, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(np.diff(xp, axis=1) > 0, np.diff(fp, axis=1) / np.diff(xp, axis=1), 0.0)
        self.m = m
        self.xp_flat = tf.constant(xp.reshape(-1))
        self.fp_flat = tf.constant(fp.reshape(-1))
        self.slope_flat = tf.constant(np.concatenate([slope, np.zeros((d, 1))], axis=1).reshape(-1))
        self.offset = tf.constant((np.arange(d, dtype=np.int64) * m)[:, None])  # (d, 1)
        self.fp_lo = tf.constant(fp[:, :1].copy())
        self.fp_hi = tf.constant(fp[:, -1:].copy())


def _tf_interp(tf: Any, t: _TFTable, x: Any, pos: Any) -> Any:
    """``np.interp`` of ``x`` ``(d, n)`` on row ``i``'s table, given ``pos`` = #(xp ≤ x) per element."""
    m = t.m
    j = tf.clip_by_value(pos - 1, 0, m - 2) + t.offset
    inner = tf.gather(t.slope_flat, j) * (x - tf.gather(t.xp_flat, j)) + tf.gather(t.fp_flat, j)
    return tf.where(pos <= 0, t.fp_lo, tf.where(pos >= m, t.fp_hi, inner))


def _tf_ndtr(tf: Any, z: Any) -> Any:
    """Standard normal CDF (float64), ``0.5 erfc(-z / sqrt 2)`` as ``scipy.special.ndtr``."""
    return 0.5 * tf.math.erfc(-z / np.sqrt(2.0))


def compiled_inverse(prep: Any) -> Any:
    """A TensorFlow function ``(z, raw conditions)`` → ``prep.inverse_transform(z[, conditions])`` (float64), or ``None``.

    Covers :class:`Identity`, :class:`Standardizer`, :class:`QuantileGaussian` and
    :class:`ConditionalQuantileGaussian` (the interpolation between the neighbouring
    bins of the condition, as the numpy method).
    """
    import tensorflow as tf

    if isinstance(prep, Identity):
        return lambda z, c: z
    if isinstance(prep, Standardizer):
        mean, scale = tf.constant(prep.mean_, tf.float64), tf.constant(prep.scale_, tf.float64)
        return lambda z, c: z * scale + mean
    if isinstance(prep, QuantileGaussian):
        q = np.ascontiguousarray(np.asarray(prep.quantiles_, np.float64).T)  # (d, m)
        r = np.asarray(prep.references_, np.float64)
        table = _TFTable(tf, np.broadcast_to(r, q.shape), q)
        rt = tf.constant(r)

        def inv(z: Any, c: Any) -> Any:
            p = tf.clip_by_value(_tf_ndtr(tf, tf.transpose(z)), BOUND, 1.0 - BOUND)
            pos = tf.reshape(tf.searchsorted(rt, tf.reshape(p, [-1]), side="right", out_type=tf.int64), tf.shape(p))
            return tf.transpose(_tf_interp(tf, table, p, pos))

        return inv
    if isinstance(prep, ConditionalQuantileGaussian):
        quant = np.asarray(prep.quantiles_, np.float64)  # (n_bins, m, d)
        nb, m, d = quant.shape
        r = np.asarray(prep.references_, np.float64)
        centers = np.asarray(prep.centers_, np.float64)
        flat = tf.constant(quant.reshape(-1))
        rt, ct = tf.constant(r), tf.constant(centers)
        cols = tf.constant(np.arange(d, dtype=np.int64))
        col = int(prep.condition)
        diffs = tuple(prep.differences)

        def cinv(z: Any, c: Any) -> Any:
            n = tf.shape(z, out_type=tf.int64)[0]
            cond = c[:, col]
            if nb == 1:
                k, a = tf.zeros_like(cond, tf.int64), tf.zeros_like(cond)
            else:
                k = tf.clip_by_value(tf.searchsorted(ct, cond, side="right", out_type=tf.int64) - 1, 0, nb - 2)
                c0, c1 = tf.gather(ct, k), tf.gather(ct, k + 1)
                span = c1 - c0
                a = tf.clip_by_value(tf.where(span > 0, (cond - c0) / tf.where(span > 0, span, 1.0), 0.0), 0.0, 1.0)
            p = tf.clip_by_value(_tf_ndtr(tf, z), BOUND, 1.0 - BOUND)  # (n, d)
            pos = tf.reshape(tf.searchsorted(rt, tf.reshape(p, [-1]), side="right", out_type=tf.int64), [n, d])
            j = tf.clip_by_value(pos - 1, 0, m - 2)
            r0, r1 = tf.gather(rt, j), tf.gather(rt, j + 1)
            f = (p - r0) / (r1 - r0)

            def table(bins: Any) -> Any:  # interp(p, r, Q[bins][:, col j]) per row and column
                base = (bins[:, None] * m) * d + cols[None, :]
                v0, v1 = tf.gather(flat, base + j * d), tf.gather(flat, base + (j + 1) * d)
                inner = v0 + (v1 - v0) * f
                first, last = tf.gather(flat, base), tf.gather(flat, base + (m - 1) * d)
                return tf.where(pos == 0, first, tf.where(pos >= m, last, inner))

            hi = tf.minimum(k + 1, nb - 1)
            out = (1.0 - a)[:, None] * table(k) + a[:, None] * table(hi)
            if not diffs:
                return out
            columns = [out[:, i] for i in range(d)]
            for i, b in diffs:  # x_i = (x_i - x_b) + x_b, as the numpy method
                columns[i] = columns[i] + columns[b]
            return tf.stack(columns, axis=1)

        return cinv
    return None
