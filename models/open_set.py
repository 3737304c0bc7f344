"""Open-set predictions: ``no action`` when the input is unlike every class the model knows.

A classifier's softmax always picks one of its classes, even for a street scene it has never
seen. The rule here (a Gaussian discriminant on frozen statistics, after Lee et al. 2018, with
outlier exposure after Hendrycks et al. 2019) adds the missing answer:

- **statistics** per step (:meth:`~respike.models.hybrid.HybridReSpike.forward` returns them as
  ``ClipOutput.stats``): the ANN's per-stage channel means and standard deviations on the
  segment's key frame, and the SNN's per-stage spike rates at the step. They describe what the
  input looks like and how it moves, not only which class it is nearest, so unfamiliar input
  stands out where the head's features (trained to separate the classes) do not.
- **components**: one Gaussian per known class and one per kind of background (outliers:
  synthetic scenes with nobody in them, :mod:`respike.synthetic.outliers`; in teach mode also
  the user's own background examples), all sharing one covariance shrunk toward its mean
  variance. That is a linear discriminant: a ``(components, D)`` weight and a bias.
- **score**: the log-odds of the background components against the class components. The
  threshold is the ``quantile`` of the score on in-distribution validation steps, so about
  ``1 - quantile`` of known input is rejected.
- **output**: ``r = sigmoid(score - threshold)`` is the probability of ``no action``; the class
  probabilities are the head's times ``1 - r``. A model with a rule returns log-probabilities of
  ``classes + 1`` outputs, the last one ``no action`` (:func:`output_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from respike.events.inputs import NO_ACTION


@dataclass(frozen=True)
class OpenSetConfig:
    """Shape and calibration of an :class:`OpenSetRule` (stored in the model's config).

    ``dims``: statistics per step; ``classes``: class components (the model's known outputs);
    ``backgrounds``: background components; ``quantile``: the share of in-distribution
    validation steps kept (``None``: no threshold, the discriminant decides);
    ``shrinkage``: weight of the mean variance in the shared covariance; ``reads``: the
    model's per-step ``stats`` (shipped checkpoints) or the head's inputs, ``features`` (taught
    ones: the motion of the last second, which tells background from action best).
    """

    dims: int
    classes: int
    backgrounds: int = 1
    quantile: float | None = 0.99
    shrinkage: float = 0.2
    reads: str = "stats"

    def __post_init__(self) -> None:
        if self.dims < 1 or self.classes < 1 or self.backgrounds < 1:
            raise ValueError("an open-set rule needs dims, classes and backgrounds ≥ 1")
        if self.quantile is not None and not 0 < self.quantile < 1:
            raise ValueError(f"quantile is {self.quantile}; expected 0 < quantile < 1")
        if self.reads not in ("stats", "features"):
            raise ValueError(f"reads is {self.reads!r}; expected 'stats' or 'features'")
        if not 0 <= self.shrinkage <= 1:
            raise ValueError(f"shrinkage is {self.shrinkage}; expected 0 ≤ shrinkage ≤ 1")


def output_names(class_names: Sequence[str], rule: OpenSetConfig | None) -> tuple[str, ...]:
    """The names of a model's outputs: its classes, then ``no action`` when it has a rule."""
    return (*class_names, NO_ACTION) if rule is not None else tuple(class_names)


def transform(stats: torch.Tensor) -> torch.Tensor:
    """The statistics as the rule sees them: rates and activations are skewed, so log1p."""
    return torch.log1p(stats.clamp(min=0))


class OpenSetRule(nn.Module):
    """The fitted rule: a linear discriminant over transformed statistics and a threshold."""

    weight: torch.Tensor
    bias: torch.Tensor
    threshold: torch.Tensor

    def __init__(self, config: OpenSetConfig) -> None:
        super().__init__()
        self.config = config
        components = config.classes + config.backgrounds
        self.register_buffer("weight", torch.zeros(components, config.dims))
        self.register_buffer("bias", torch.zeros(components))
        self.register_buffer("threshold", torch.zeros(()))

    def score(self, stats: torch.Tensor) -> torch.Tensor:
        """Log-odds of background against the known classes minus the threshold, per step
        (``> 0``: more likely no action than not)."""
        if stats.shape[-1] != self.config.dims:
            raise ValueError(
                f"open-set statistics have {stats.shape[-1]} values; the rule takes "
                f"{self.config.dims}"
            )
        z = transform(stats) @ self.weight.T + self.bias
        k = self.config.classes
        return z[..., k:].logsumexp(-1) - z[..., :k].logsumexp(-1) - self.threshold

    def forward(self, stats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the ``classes`` outputs and ``no action`` (last)."""
        a = self.score(stats)
        known = logits.log_softmax(-1) + F.logsigmoid(-a).unsqueeze(-1)
        return torch.cat([known, F.logsigmoid(a).unsqueeze(-1)], dim=-1)


def linear_discriminant(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    components: int,
    shrinkage: float,
    *,
    standardize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(components, D)`` and bias of Gaussians with one shared covariance fitted to
    rows ``x (N, D)`` of components ``y (N,)``: the log-likelihoods up to a shared term.

    The covariance is shrunk toward its mean variance by ``shrinkage`` (few rows need much);
    ``standardize`` fits on each dimension scaled to unit variance and folds that back into the
    weights, so shrinkage treats dimensions of different scales alike. Every component needs a
    row.
    """
    rows = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    counts = np.bincount(labels, minlength=components)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"no statistics for components {missing} (every one needs examples)")
    centre = rows.mean(0) if standardize else np.zeros(rows.shape[1])
    scale = rows.std(0) + 1e-6 if standardize else np.ones(rows.shape[1])
    rows = (rows - centre) / scale
    means = np.stack([rows[labels == c].mean(0) for c in range(components)])
    centred = rows - means[labels]
    cov = centred.T @ centred / len(rows)
    dims = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / dims + 1e-6) * np.eye(dims)
    weight = means @ np.linalg.inv(cov)
    bias = -0.5 * np.einsum("cd,cd->c", weight, means) - (weight / scale) @ centre
    return torch.from_numpy(weight / scale).float(), torch.from_numpy(bias).float()


def fit_open_set(
    known: npt.ArrayLike,
    labels: npt.ArrayLike,
    background: npt.ArrayLike,
    background_labels: npt.ArrayLike,
    validation: npt.ArrayLike | None,
    *,
    quantile: float | None = 0.99,
    shrinkage: float = 0.2,
    standardize: bool = False,
) -> OpenSetRule:
    """Fit a rule: ``known (N, D)`` statistics of class ``labels (N,)``, ``background (M, D)``
    of kinds ``background_labels (M,)``, threshold the ``quantile`` of the scores of
    ``validation (V, D)`` known steps; ``quantile=None``: no threshold, the discriminant alone
    decides (when the background examples are of the very input to be rejected).

    Closed form (means, one covariance, one inverse): a second on 2 cores for a few thousand
    steps. Every class and background kind needs at least one step. ``standardize`` fits on
    each dimension scaled to unit variance (folded back into the weights), so shrinkage treats
    dimensions of different scales alike.
    """
    x_known = np.asarray(known, dtype=np.float64)
    y_known = np.asarray(labels, dtype=np.int64)
    x_back = np.asarray(background, dtype=np.float64)
    y_back = np.asarray(background_labels, dtype=np.int64)
    x_val = np.asarray(validation if validation is not None else [], dtype=np.float64)
    if x_known.ndim != 2 or len(x_known) != len(y_known) or len(x_back) != len(y_back):
        raise ValueError("known/background statistics must be (N, D) with one label per row")
    if x_back.ndim != 2 or x_back.shape[1] != x_known.shape[1]:
        raise ValueError("background statistics need the known ones' width")
    if quantile is not None and (x_val.ndim != 2 or len(x_val) == 0):
        raise ValueError("a quantile threshold needs validation statistics (V, D)")
    classes = int(y_known.max()) + 1
    backgrounds = int(y_back.max()) + 1
    x = np.log1p(np.maximum(np.concatenate([x_known, x_back]), 0))
    y = np.concatenate([y_known, classes + y_back])
    weight, bias = linear_discriminant(
        x, y, classes + backgrounds, shrinkage, standardize=standardize
    )
    rule = OpenSetRule(OpenSetConfig(x.shape[1], classes, backgrounds, quantile, shrinkage))
    rule.weight.copy_(weight)
    rule.bias.copy_(bias)
    if quantile is not None:
        with torch.no_grad():
            scores = rule.score(torch.from_numpy(x_val).float())
        rule.threshold.fill_(float(torch.quantile(scores, quantile)))
    return rule


__all__ = [
    "OpenSetConfig",
    "OpenSetRule",
    "fit_open_set",
    "linear_discriminant",
    "output_names",
    "transform",
]
