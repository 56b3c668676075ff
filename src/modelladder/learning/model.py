"""The gate model of one step: a score "this answer is right", fitted on labelled attempts.

Two small, well-known models from scikit-learn (maintained, and their fitted state is a few
numbers, so a calibration stores them as JSON -- never a pickle a store could be poisoned with):

* ``logistic``: standardised features -> logistic regression (L2, C=1);
* ``isotonic``: isotonic regression on the best single signal, when that signal alone separates
  right from wrong at least as well as the regression does (5-fold cross-validated ROC AUC on
  the fitting labels only; the held-out labels that certify the threshold are never seen here).

With one class only (every label right, or every one wrong) nothing can be fitted; the score
is then the mean value-token log-probability itself (``signal``), still thresholded by the bound.
Scoring at run time needs only numpy: the ladder's hot path never imports scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelladder.learning.features import NUMERIC, NUMERIC_V1, SIGNALS, Encoder, Row
from modelladder.learning.request_features import REQUEST_NUMERIC

__all__ = ["ACCEPT_ALL", "GateModel", "KINDS", "ModelError", "fit", "threshold_grid"]

KINDS = ("logistic", "isotonic", "signal")
ACCEPT_ALL = -1e300  # a threshold below every score (JSON has no -inf)


class ModelError(ValueError):
    """A stored gate model that cannot be read (a corrupt or foreign calibration row)."""


@dataclass(frozen=True)
class GateModel:
    kind: str
    encoder: Encoder
    params: dict[str, Any]
    cv_auc: dict[str, float | None]

    def score(self, row: Row) -> float:
        if self.kind == "logistic":
            x = (np.asarray(self.encoder.vector(row)) - self.params["mean"]) / self.params["scale"]
            z = float(np.dot(x, self.params["coef"]) + self.params["intercept"])
            return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
        v = row.numeric[self.params["signal"]]
        if self.kind == "isotonic":
            return float(np.interp(v, self.params["x"], self.params["y"]))
        return float(v)

    def as_dict(self) -> dict[str, Any]:
        p = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.params.items()}
        return {"kind": self.kind, "encoder": self.encoder.as_dict(), "params": p, "cv_auc": self.cv_auc}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateModel:
        try:
            kind = d["kind"]
            if kind not in KINDS:
                raise ModelError(f"unknown gate model kind {kind!r}")
            numeric = tuple(d["encoder"].get("numeric") or NUMERIC_V1)  # older models name none
            unknown = sorted(set(numeric) - set(NUMERIC) - set(REQUEST_NUMERIC))
            if unknown:
                raise ModelError(f"gate model uses unknown features {unknown}")
            enc = Encoder(tuple(d["encoder"]["tools"]), tuple(d["encoder"]["rungs"]), numeric)
            params = dict(d["params"])
            if kind == "logistic":
                n = len(enc.names)
                for k in ("mean", "scale", "coef"):
                    params[k] = np.asarray(params[k], dtype=float)
                    if params[k].shape != (n,):
                        raise ModelError(f"gate model {k} has {params[k].shape[0]} values for {n} features")
                params["intercept"] = float(params["intercept"])
            elif params.get("signal") not in SIGNALS:
                raise ModelError(f"unknown gate signal {params.get('signal')!r}")
            if kind == "isotonic" and len(params["x"]) != len(params["y"]):
                raise ModelError("isotonic breakpoints differ in length")
            return cls(kind, enc, params, dict(d.get("cv_auc") or {}))
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed gate model: {type(exc).__name__}: {exc}") from exc


def _cv_auc_logistic(x: np.ndarray, y: np.ndarray, folds: int) -> float | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    pred = cross_val_predict(pipe, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, pred))


def fit(
    rows: Sequence[Row],
    correct: Sequence[bool],
    *,
    signals: Sequence[str] = SIGNALS,
    numeric: Sequence[str] = NUMERIC,
) -> GateModel:
    """Fit the step's gate model on ``rows`` labelled ``correct``.

    ``signals``: the single signals an isotonic fit may use instead of the regression (none:
    always the regression, as the skip predictor's request features have no such signal);
    ``numeric``: the features the rows carry."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    if len(rows) != len(correct) or not rows:
        raise ValueError("fit needs as many labels as rows, and at least one")
    enc = Encoder.fit(rows, numeric=tuple(numeric))
    y = np.asarray([bool(c) for c in correct], dtype=int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        if not signals:
            raise ValueError("fit needs right and wrong labels both where no single signal may stand in")
        return GateModel("signal", enc, {"signal": "mean_logprob"}, {})
    x = np.asarray([enc.vector(r) for r in rows], dtype=float)
    single = {s: float(roc_auc_score(y, [r.numeric[s] for r in rows])) for s in signals}
    folds = min(5, n_pos, n_neg)
    lr_auc = _cv_auc_logistic(x, y, folds) if folds >= 2 else None
    aucs: dict[str, float | None] = {"logistic": lr_auc, **{f"signal:{k}": v for k, v in single.items()}}
    best = max(single, key=lambda s: single[s]) if single else None
    if best is not None and (lr_auc is None or single[best] >= lr_auc):
        iso = IsotonicRegression(out_of_bounds="clip", increasing=True)
        iso.fit([r.numeric[best] for r in rows], y)
        params = {"signal": best, "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return GateModel("isotonic", enc, params, aucs)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit((x - scaler.mean_) / scale, y)
    params = {"mean": scaler.mean_, "scale": scale, "coef": lr.coef_[0], "intercept": float(lr.intercept_[0])}
    return GateModel("logistic", enc, params, aucs)


def threshold_grid(scores: Sequence[float], first_share: float = 0.10, step: float = 0.05) -> list[float]:
    """Thresholds from the strictest to the laxest, at the fitting scores' quantiles: the one
    accepting the top ``first_share`` of them, then ``step`` more each, then everything
    (:data:`ACCEPT_ALL`). Fixed from the fitting half, so the held-out labels that test them
    cannot have chosen them."""
    first_share = min(max(first_share, 0.0), 1.0)
    shares = [first_share + step * i for i in range(int((1.0 - first_share) / step) + 1)] + [1.0]
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    out: list[float] = []
    for share in shares:
        top = max(0, min(len(s) - 1, math.ceil(share * len(s)) - 1))
        t = ACCEPT_ALL if share >= 1.0 else float(s[top])
        if not out or t < out[-1]:
            out.append(t)
    return out
