"""Off-policy evaluation: what a candidate policy would have earned, estimated from a logged one.

Pure numpy. For each logged decision i: the reward r_i of the action the logging policy took,
the probability p_i with which it took it (the logged propensity), the probability pi_i with
which the candidate would have taken that same action, and (for doubly robust) a reward model's
prediction q_i for the logged action and its expectation v_i under the candidate's choices.

- IPS: mean(w r), w = min(pi / p, clip);
- self-normalised IPS: sum(w r) / sum(w);
- doubly robust: mean(v + w (r - q)).

`compare` estimates the difference between a candidate and a champion on the same decisions
(paired, one reward model for both), which needs far fewer decisions than comparing two
separate intervals: decisions where the policies agree add nothing to its variance.

Confidence intervals are percentile bootstraps over decisions. Overlap is checked before any
verdict: a candidate whose weights leave too small an effective sample size (sum w)^2 / sum w^2,
or that chooses actions the logging policy never could, gets no verdict, and the reason says
which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """Plain numbers (JSON)."""
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Evaluation:
    """A candidate's estimated value per decision and whether the log supports a verdict.

    Attributes:
        n: logged decisions used.
        logged: the logged policy's observed mean reward (with its bootstrap interval).
        ips: inverse propensity scoring.
        snips: self-normalised IPS.
        dr: doubly robust (None without a reward model).
        ess: effective sample size of the (clipped) weights.
        clipped_share: share of decisions whose weight was clipped.
        unsupported_share: share of the candidate's probability mass on actions the logging
            policy could not take (zero propensity): no estimator sees it.
        refusal: why no verdict is given (None: the overlap is good enough).
    """

    n: int
    logged: Interval
    ips: Interval
    snips: Interval
    dr: Interval | None
    ess: float
    clipped_share: float
    unsupported_share: float
    refusal: str | None

    @property
    def best(self) -> Interval:
        """The estimate to act on: doubly robust when there is a reward model, else SNIPS."""
        return self.dr if self.dr is not None else self.snips


@dataclass(frozen=True)
class VerdictRules:
    """What a verdict needs and how its intervals are drawn, alike for `evaluate` and `compare`.

    Attributes:
        min_ess: below this effective sample size there is no verdict.
        max_unsupported: above this average unsupported mass there is no verdict.
        confidence: the bootstrap intervals' level.
        bootstrap: bootstrap resamples.
        seed: the resampling seed.
    """

    min_ess: float = 50.0
    max_unsupported: float = 0.01
    confidence: float = 0.95
    bootstrap: int = 500
    seed: int = 0


@dataclass(frozen=True)
class Logged:
    """The logged policy's decisions, one value a decision.

    Attributes:
        rewards: reward of each logged action (accepted: 1/0, or the value accepted).
        propensity: probability with which the logging policy took it, in (0, 1].
        q_logged: a reward model's prediction for each logged action (None: no reward model,
            so no doubly robust estimate).
    """

    rewards: ArrayLike
    propensity: ArrayLike
    q_logged: ArrayLike | None = None


@dataclass(frozen=True)
class Policy:
    """A policy to estimate, as seen on the logged decisions, one value a decision.

    Attributes:
        probability: probability with which the policy would take the logged action.
        expected: the reward model's expected reward under the policy (None: no reward model).
        unsupported: the policy's probability on actions the logging policy could not take
            (None: 0).
    """

    probability: ArrayLike
    expected: ArrayLike | None = None
    unsupported: ArrayLike | None = None


@dataclass(frozen=True)
class _Bootstrap:
    """The resampled decisions (`rows`, one resample a row) and the percentile intervals."""

    rows: NDArray[np.int64]
    tail: float

    @classmethod
    def draw(cls, n: int, rules: VerdictRules) -> _Bootstrap:
        """`rules.bootstrap` resamples of `n` decisions, with the tail of `rules.confidence`."""
        rows = np.random.default_rng(rules.seed).integers(0, n, size=(rules.bootstrap, n))
        return cls(rows, (1 - rules.confidence) / 2 * 100)

    def interval(self, point: float, samples: Array) -> Interval:
        """`point` with the percentile interval of its resampled values `samples`."""
        low, high = np.percentile(samples, [self.tail, 100 - self.tail])
        return Interval(float(point), float(low), float(high))


@dataclass(frozen=True)
class _Overlap:
    """How well the logging policy covers a candidate's weights, and the refusal it implies."""

    ess: float
    unsupported_share: float
    refusal: str | None

    @classmethod
    def of(cls, w: Array, lost: Array, n: int, rules: VerdictRules) -> _Overlap:
        """The overlap of `n` decisions' clipped weights `w` and unsupported masses `lost`."""
        ess = effective_sample_size(w)
        share = float(np.mean(lost))
        return cls(ess, share, _refusal(ess, n, share, rules.min_ess, rules.max_unsupported))


def _vector(values: ArrayLike, name: str, n: int | None = None) -> Array:
    array = np.asarray(values, dtype=float).ravel()
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: every value must be finite")
    return array


def _rewards(values: ArrayLike, purpose: str) -> Array:
    r = _vector(values, "rewards")
    if r.shape[0] == 0:
        raise ValueError(f"rewards: no logged decision to {purpose}")
    return r


def _required(values: ArrayLike | None, name: str) -> ArrayLike:
    if values is None:
        raise ValueError(f"{name}: a paired comparison needs the reward model's values")
    return values


def _unsupported(values: ArrayLike | None, n: int) -> Array:
    return np.zeros(n) if values is None else _vector(values, "unsupported", n)


def weights(target: ArrayLike, propensity: ArrayLike, clip: float | None = None) -> Array:
    """Importance weights pi / p of the logged actions, clipped at `clip` (None: not clipped).

    Raises:
        ValueError: a logged propensity outside (0, 1] or a target probability outside [0, 1].
    """
    p = _vector(propensity, "propensity")
    pi = _vector(target, "target", p.shape[0])
    if np.any((p <= 0) | (p > 1)):
        raise ValueError("propensity: every logged propensity must be in (0, 1]")
    if np.any((pi < 0) | (pi > 1)):
        raise ValueError("target: every target probability must be in [0, 1]")
    w = pi / p
    return w if clip is None else np.minimum(w, clip)


def effective_sample_size(w: ArrayLike) -> float:
    """(sum w)^2 / sum w^2: how many decisions the weighted estimate is worth (0: no overlap)."""
    array = np.asarray(w, dtype=float)
    squares = float(np.sum(array**2))
    return 0.0 if squares == 0 else float(np.sum(array) ** 2 / squares)


def _ips(w: Array, r: Array) -> Array:
    return np.asarray(np.mean(w * r, axis=-1), dtype=float)


def _snips(w: Array, r: Array) -> Array:
    total = np.sum(w, axis=-1)
    safe = np.where(total > 0, total, 1.0)
    return np.asarray(np.where(total > 0, np.sum(w * r, axis=-1) / safe, 0.0), dtype=float)


def _dr(w: Array, r: Array, q: Array, v: Array) -> Array:
    return np.asarray(np.mean(v + w * (r - q), axis=-1), dtype=float)


def evaluate(
    log: Logged,
    target: Policy,
    *,
    clip: float | None = 100.0,
    rules: VerdictRules | None = None,
) -> Evaluation:
    """Estimate a candidate policy's mean reward per decision from a logged policy's decisions.

    The doubly robust estimate needs a reward model: `log.q_logged` and `target.expected`.

    Args:
        log: the logged decisions' rewards, propensities and (optionally) reward model.
        target: the candidate's probabilities of the logged actions, its reward model
            expectation and its unsupported mass.
        clip: largest importance weight (None: no clipping).
        rules: the overlap a verdict needs and the bootstrap of the intervals (None: the
            defaults of `VerdictRules`).

    Raises:
        ValueError: inputs of different lengths, no decision, or probabilities out of range.
    """
    rules = VerdictRules() if rules is None else rules
    r = _rewards(log.rewards, "evaluate")
    n = r.shape[0]
    w = weights(target.probability, log.propensity, clip)
    raw = weights(target.probability, log.propensity, None)
    has_model = log.q_logged is not None and target.expected is not None
    q = _vector(log.q_logged, "q_logged", n) if has_model else np.zeros(n)  # type: ignore[arg-type]
    v = _vector(target.expected, "v_target", n) if has_model else np.zeros(n)  # type: ignore[arg-type]
    lost = _unsupported(target.unsupported, n)
    boot = _Bootstrap.draw(n, rules)
    rows = boot.rows
    overlap = _Overlap.of(w, lost, n, rules)
    return Evaluation(
        n=n,
        logged=boot.interval(float(np.mean(r)), np.mean(r[rows], axis=-1)),
        ips=boot.interval(float(_ips(w, r)), _ips(w[rows], r[rows])),
        snips=boot.interval(float(_snips(w, r)), _snips(w[rows], r[rows])),
        dr=(
            boot.interval(float(_dr(w, r, q, v)), _dr(w[rows], r[rows], q[rows], v[rows]))
            if has_model
            else None
        ),
        ess=overlap.ess,
        clipped_share=float(np.mean(raw > w)),
        unsupported_share=overlap.unsupported_share,
        refusal=overlap.refusal,
    )


def _refusal(
    ess: float, n: int, unsupported: float, min_ess: float, max_unsupported: float
) -> str | None:
    """Why the log cannot support a verdict on this candidate (None: it can)."""
    if ess == 0:
        return (
            "no overlap: the candidate never takes an action the logging policy took "
            f"(all {n} importance weights are 0)"
        )
    if unsupported > max_unsupported:
        return (
            f"poor overlap: {unsupported:.1%} of the candidate's choices are actions the logging "
            f"policy never takes (allowed {max_unsupported:.1%}); log more exploration first"
        )
    if ess < min_ess:
        return (
            f"poor overlap: the weights leave an effective sample size of {ess:.0f} of {n} "
            f"decisions (needs {min_ess:.0f}); log more exploration or wait for more decisions"
        )
    return None


@dataclass(frozen=True)
class Comparison:
    """A candidate against a champion on the same logged decisions (doubly robust, paired).

    Attributes:
        n: logged decisions used.
        difference: the candidate's value minus the champion's, per decision, with the
            bootstrap interval of the mean difference.
        candidate: the candidate's doubly robust value per decision.
        champion: the champion's doubly robust value per decision.
        disagreements: decisions where the two policies' probabilities differ.
        ess: effective sample size of the candidate's (clipped) weights.
        unsupported_share: the candidate's mass on actions the logging policy cannot take.
        refusal: why no verdict is given (None: the candidate's overlap is good enough).
    """

    n: int
    difference: Interval
    candidate: Interval
    champion: Interval
    disagreements: int
    ess: float
    unsupported_share: float
    refusal: str | None

    @property
    def promotes(self) -> bool:
        """The candidate wins: a verdict is allowed and the difference's lower bound is > 0."""
        return self.refusal is None and self.difference.low > 0


def compare(
    log: Logged,
    candidate: Policy,
    champion: Policy,
    *,
    clip: float | None = None,
    rules: VerdictRules | None = None,
) -> Comparison:
    """The doubly robust value of a candidate minus a champion's, decision by decision.

    Both are scored with the same reward model (`log.q_logged` for the logged action, each
    policy's `expected` its expectation under that policy), so on a decision where the two
    policies agree the two doubly robust terms are equal and the difference is exactly 0: only
    the decisions where they differ add variance, and the interval of the mean difference is
    far narrower than either policy's own interval.

    Args:
        log: the logged decisions, with the reward model's `q_logged` (required).
        candidate: the candidate, with its reward model expectation (required).
        champion: the champion, likewise; its `unsupported` is not read.
        clip, rules: as for `evaluate`; the overlap refusal is judged on the candidate's
            weights and unsupported mass.

    Raises:
        ValueError: as for `evaluate`, or a missing reward model.
    """
    rules = VerdictRules() if rules is None else rules
    r = _rewards(log.rewards, "compare on")
    n = r.shape[0]
    w_new = weights(candidate.probability, log.propensity, clip)
    w_old = weights(champion.probability, log.propensity, clip)
    q = _vector(_required(log.q_logged, "q_logged"), "q_logged", n)
    v_new = _vector(_required(candidate.expected, "v_candidate"), "v_candidate", n)
    v_old = _vector(_required(champion.expected, "v_champion"), "v_champion", n)
    lost = _unsupported(candidate.unsupported, n)
    new_terms = v_new + w_new * (r - q)
    old_terms = v_old + w_old * (r - q)
    boot = _Bootstrap.draw(n, rules)

    def interval(terms: Array) -> Interval:
        return boot.interval(float(np.mean(terms)), np.mean(terms[boot.rows], axis=-1))

    overlap = _Overlap.of(w_new, lost, n, rules)
    differs = (np.abs(w_new - w_old) > 1e-12) | (np.abs(v_new - v_old) > 1e-12)
    return Comparison(
        n=n,
        difference=interval(new_terms - old_terms),
        candidate=interval(new_terms),
        champion=interval(old_terms),
        disagreements=int(np.sum(differs)),
        ess=overlap.ess,
        unsupported_share=overlap.unsupported_share,
        refusal=overlap.refusal,
    )
