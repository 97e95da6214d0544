"""Regressed sWeights: the conditional expectation of the sWeights given the observables.

A PIDCalib-like calibration sample carries signed sWeights (:mod:`sim.reference.calibration`):
a background track gets a weight of either sign, and only the sum over many background
tracks in the same region of the observables is zero.  A generative model trained with
the raw weights sees that cancellation only statistically, batch by batch; where the
background dominates (kaons below 10 GeV: 63-85 % of the D* candidates) the GAN kept a
pion-like tail of a few per cent in the kaons' RichDLLK that the weighted sample does not
hold (docs/pid.md, "Kaons below 10 GeV").

The conditional expectation of the sWeight given the observables x, E[w | x], is the
signal probability of an event at x (M. Borisyak, N. Kazeev, "Machine Learning on data with
sPlot background subtraction", JINST 14 (2019) P08020, arXiv:1905.11719).  Its estimate keeps
the sums of the sWeights over any region of x larger than a regression leaf (the sample's own
fluctuations included), but each event's weight is a leaf's mean of at least 100 weights:
in a background-only region about +-0.15 per event instead of +-1.5 (tested), so the
cancellation is done before the training instead of inside each minibatch (their motivation:
negative weights leave a loss without a lower bound).  :func:`regress_sweights` estimates it with a gradient-boosted
regression of the sWeights on x, cross-fitted (each event's weight predicted by a model
that did not see it), and keeps the sign of the prediction (clipping the negative
predictions at 0 leaves a positive bias where the signal density is 0: measured on the
kaon RICH GAN, docs/pid.md).

scikit-learn is imported inside the function.
"""

from __future__ import annotations

import numpy as np

from mambah.errors import ConfigError, DataError

__all__ = ("regress_sweights",)


def regress_sweights(
    features: np.ndarray,
    sweights: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 200,
    min_samples_leaf: int = 100,
) -> np.ndarray:
    """Cross-fitted estimate of E[sWeight | features] for every event.

    Args:
        features: ``(n, k)`` observables the weights are regressed on (for a GAN: its
            conditions and its targets).
        sweights: ``(n,)`` signed sWeights.
        folds: cross-fitting folds (each event predicted by the model of the other folds).
        seed: seed of the fold split and of the regressors.
        max_iter, min_samples_leaf: of :class:`sklearn.ensemble.HistGradientBoostingRegressor`
            (squared error; 100 events per leaf at least, so a leaf averages many ± weights;
            early stopping on a tenth of each fold).

    Returns:
        ``(n,)`` float64 regressed weights (signed; their sum is the sum of the sWeights
        up to the regression's error).

    Raises:
        DataError: mismatched shapes, NaN/inf, too few events for the folds.
        ConfigError: ``folds < 2`` or a non-positive ``max_iter`` / ``min_samples_leaf``.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold

    x = np.asarray(features, dtype=np.float64)
    w = np.asarray(sweights, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != w.size:
        raise DataError(f"regress_sweights: features of shape {x.shape} and {w.size} sWeights; "
                        f"expected (n, k) features for n sWeights")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(w))):
        raise DataError("regress_sweights: the features or sWeights hold NaN or inf")
    if isinstance(folds, bool) or int(folds) != folds or folds < 2:
        raise ConfigError(f"regress_sweights: folds={folds!r}; need an integer >= 2")
    if max_iter < 1 or min_samples_leaf < 1:
        raise ConfigError(f"regress_sweights: max_iter={max_iter!r} and min_samples_leaf={min_samples_leaf!r} "
                          f"must be >= 1")
    if w.size < int(folds) * 2 * min_samples_leaf:
        raise DataError(f"regress_sweights: {w.size} events are too few for {folds} folds of leaves of "
                        f"{min_samples_leaf}; need at least {int(folds) * 2 * min_samples_leaf}")
    out = np.empty_like(w)
    for i, (train, test) in enumerate(KFold(int(folds), shuffle=True, random_state=seed).split(x)):
        # early stopping on a held-out tenth of the fold (scikit-learn's "auto" above 10 000 events,
        # here always): the regression stops before it follows the weights' noise
        reg = HistGradientBoostingRegressor(max_iter=max_iter, min_samples_leaf=min_samples_leaf,
                                            early_stopping=True, random_state=seed + i)
        reg.fit(x[train], w[train])
        out[test] = reg.predict(x[test])
    return out
