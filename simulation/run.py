"""`loyal simulate`: days of traffic replayed in-process against the policy, answers from the truth.

Each policy gets a fresh feedback store and decision log and the same requests (customers and
channels drawn once, each customer through each channel as often as the bank's engagement data
says they use it, with the same uniform draw deciding each answer, so the policies differ only
by what they show). Requests go to the serving `Runtime` in-process (the service's engine,
without HTTP: a live server replay of tens of thousands of requests would take far longer on two
cores); answers drawn from the hidden truth go back through `Runtime.feedback` with their
`decision_id`. Policies:

- static: the catalog's `p_accept`, with the configured exploration share (the logging policy);
- learned: the same, plus nightly retraining of the acceptance model on the decision log and
  promotion when its paired doubly robust gain over the champion (on the last week) is surely
  positive;
- oracle: P(accept) from the truth itself, no exploration;
- learned-frozen: the learned run's final model (or, when none was ever promoted, the model its
  log's answers fit), no learning and no exploration: the simulated value the off-policy
  estimate from the static log is checked against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from decisions.explore import Exploration
from decisions.log import DecisionLog, Outcome
from decisions.ope import Comparison, Interval
from decisions.record import DecisionRecorder
from loyal.settings import DecisionSettings, Settings
from models.acceptance import AcceptanceModel
from serving.champions import LoadedModel
from serving.fastacceptance import compiled
from serving.runtime import RequestError, Runtime
from serving.schemas import FeedbackRequest, NextBestActionRequest
from simulation.truth import AcceptanceTruth, load_or_draw
from training.acceptance import (
    MIN_ANSWERS,
    catalog_policy,
    closed_outcomes,
    crossfit_gain,
    fit,
    ope_frame,
    paired_gain,
    policy_value,
    predict_frame,
)

log = logging.getLogger(__name__)

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
HOLDOUT_DAYS = 7
IGNORE_SHARE = 0.5
"""Of the answers that are not an acceptance, the share never sent back (ignored)."""


@dataclass(frozen=True)
class Request:
    """One simulated request and the uniform draws that decide its answer."""

    at: datetime
    customer_id: str
    channel: str
    accept_draw: float
    ignore_draw: float


@dataclass
class PolicyResult:
    """What one policy earned over the simulated days."""

    name: str
    decisions: int = 0
    shown: int = 0
    accepted: int = 0
    value: float = 0.0
    expected: float = 0.0
    promotions: int = 0
    daily_value: list[float] = field(default_factory=list)
    model: AcceptanceModel | None = None
    log: DecisionLog | None = None
    nights: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers."""
        return {
            "decisions": self.decisions,
            "shown": self.shown,
            "accepted": self.accepted,
            "accepted_value": round(self.value, 2),
            "expected_value": round(self.expected, 2),
            "value_per_decision": round(self.value / max(self.decisions, 1), 4),
            "promotions": self.promotions,
            "first_promotion_day": next((n["day"] for n in self.nights if n["promoted"]), None),
        }


INTERACTIONS = {
    "mobile": ("logins_90d", 0.5),
    "web": ("logins_90d", 0.5),
    "call_center": ("calls_90d", 1.0),
    "branch": ("branch_visits_90d", 1.0),
    "atm": ("atm_visits_90d", 1.0),
    "email": ("email_opens_90d", 1.0),
}
"""Channel -> the engagement count (last 90 days) its requests follow, and the count's share
(app and online-banking logins split evenly between mobile and web)."""


def interaction_pool(
    features: Mapping[str, Mapping[str, Any] | None], channels: Sequence[str]
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Every (customer, channel) pair with its share of the traffic.

    A customer comes through a channel as often as the bank's own engagement data says they
    used it (logins, calls, branch and ATM visits, e-mails opened in 90 days), so busy
    customers and busy channels make most requests; without those counts (not the sample
    bank) every pair is equally likely.
    """
    pairs = [(c, ch) for c in features for ch in channels]
    weights = np.array([_interactions(features[c], ch) for c, ch in pairs], dtype=float)
    if not np.isfinite(weights).all() or weights.sum() <= 0:
        weights = np.ones(len(pairs))
    return pairs, weights / weights.sum()


def _interactions(row: Mapping[str, Any] | None, channel: str) -> float:
    name, share = INTERACTIONS.get(channel, ("", 0.0))
    value = (row or {}).get(name)
    return share * float(value) if isinstance(value, int | float) and value > 0 else 0.0


def requests(
    pool: Sequence[tuple[str, str]], weights: np.ndarray, days: int, per_day: int, seed: int
) -> list[list[Request]]:
    """The same traffic for every policy: per day, (customer, channel) pairs drawn from the
    pool by their traffic shares."""
    rng = np.random.default_rng(seed)
    out = []
    for day in range(days):
        base = START + timedelta(days=day)
        picks = rng.choice(len(pool), size=per_day, p=weights)
        seconds = np.sort(rng.uniform(0, 10 * 3600, per_day))
        draws = rng.random((per_day, 2))
        out.append(
            [
                Request(
                    base + timedelta(seconds=float(s)),
                    pool[int(p)][0],
                    pool[int(p)][1],
                    float(a),
                    float(i),
                )
                for p, s, (a, i) in zip(picks, seconds, draws, strict=True)
            ]
        )
    return out


class _Clock:
    """The simulated time the runtime reads."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _runtime(settings: Settings, folder: Path, share: float, clock: _Clock) -> Runtime:
    """A runtime with its own stores and exploration share, on the simulated clock."""
    own = settings.model_copy(deep=True)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db*"):
        stale.unlink()
    own.serving.feedback_db = folder / "feedback.db"
    own.decisions.db = folder / "decisions.db"
    own.decisions.url = None
    runtime = Runtime.start(own)
    runtime.decisions = DecisionRecorder(
        DecisionLog(folder / "decisions.db"),
        Exploration(share, own.decisions.explore_period_days, own.decisions.explore_salt),
        log_features=True,
    )
    runtime.clock = clock
    return runtime


def _serve(name: str, model: Any) -> LoadedModel:
    """Serve `model` as the acceptance champion (a learned one on compiled trees, as the
    service loads it)."""
    if isinstance(model, AcceptanceModel):
        model = compiled(model)
    return LoadedModel("acceptance", model, name, "simulation", None)


def run_policy(
    name: str,
    runtime: Runtime,
    clock: _Clock,
    traffic: list[list[Request]],
    truth: AcceptanceTruth,
    nightly: Callable[[PolicyResult, datetime], None] | None = None,
) -> PolicyResult:
    """Serve every request, answer from the truth, retrain nightly if asked."""
    result = PolicyResult(name, log=runtime.decisions.store)
    started = time.perf_counter()
    for day, batch in enumerate(traffic):
        day_value = 0.0
        for request in batch:
            clock.now = request.at
            answer = runtime.next_best_action(
                NextBestActionRequest(customer_id=request.customer_id, channel=request.channel)
            )
            result.decisions += 1
            if not answer.actions:
                continue
            action = answer.actions[0]
            result.shown += 1
            p = truth.probability(action.action_id, request.channel, request.customer_id)
            result.expected += p * action.value
            accepted = request.accept_draw < p
            if not accepted and request.ignore_draw < IGNORE_SHARE:
                continue  # ignored: no answer comes back
            try:
                runtime.feedback(
                    FeedbackRequest(
                        customer_id=request.customer_id,
                        action_id=action.action_id,
                        channel=request.channel,
                        outcome="accepted" if accepted else "declined",
                        decision_id=answer.decision_id,
                        ts=request.at + timedelta(minutes=1),
                    )
                )
            except RequestError as exc:
                log.warning("feedback refused: %s", exc)
                continue
            if accepted:
                result.accepted += 1
                day_value += action.value
        result.value += day_value
        result.daily_value.append(day_value)
        if nightly is not None:
            nightly(result, START + timedelta(days=day + 1))
        if (day + 1) % 10 == 0:
            log.info(
                "%s: day %d of %d, %d decisions, accepted value %.0f (%.0f s)",
                name, day + 1, len(traffic), result.decisions, result.value,
                time.perf_counter() - started,
            )  # fmt: skip
    return result


PROMOTION_RULES = ("holdout", "crossfit", "always")
"""How the nightly comparison is judged: the latest week as holdout for a model fitted on the
earlier answers (the default), cross-fitted on every answered decision, or not at all
("always": every night's model serves, once there are `MIN_ANSWERS` answers; unsafe, a
diagnostic of what the gate costs, never a production rule)."""


_UNGATED = Comparison(0, Interval(0, 1, 1), Interval(0, 0, 0), Interval(0, 0, 0), 0, 0, 0, None)
"""The "always" rule's stand-in comparison: it promotes and tells nothing."""


def nightly_retraining(
    runtime: Runtime,
    priors: dict[str, float],
    ignore: timedelta,
    options: DecisionSettings,
    rule: str = "holdout",
) -> Callable[[PolicyResult, datetime], None]:
    """Each night: compare the model the answers teach with the champion (the catalog policy
    while there is none) by the paired doubly robust gain, promote when its lower bound is
    above 0, then serve the model fitted on every answer.

    `rule`: "holdout" fits on answers before the last week and judges that week; "crossfit"
    judges every answered decision out of fold (`crossfit_gain`); "always" promotes nightly.
    """
    if rule not in PROMOTION_RULES:
        raise ValueError(f"promotion rule: one of {', '.join(PROMOTION_RULES)}, not {rule!r}")
    champion_until: list[datetime] = []  # the champion's training cut-off, once there is one

    def gain_of(result: PolicyResult, outcomes: list[Outcome], now: datetime) -> Comparison | None:
        if rule == "always":
            return _UNGATED if len(outcomes) >= MIN_ANSWERS else None
        if rule == "crossfit":
            if len(outcomes) < MIN_ANSWERS:
                return None
            until = champion_until[-1] if champion_until else None
            return crossfit_gain(outcomes, priors, options, until)
        cut = now - timedelta(days=HOLDOUT_DAYS)
        early = [o for o in outcomes if o.decision.ts < cut]
        late = [o for o in outcomes if o.decision.ts >= cut]
        if len(early) < 100 or len(late) < 100:
            return None
        holdout = ope_frame(late, priors)
        p_new = predict_frame(fit(early, options), holdout)
        p_old = (
            catalog_policy(holdout)
            if result.model is None
            else predict_frame(result.model, holdout)
        )
        return paired_gain(holdout, p_new, p_old, p_new)

    def night(result: PolicyResult, now: datetime) -> None:
        store = result.log
        if store is None:
            return
        outcomes = closed_outcomes(store, now, ignore)
        gain = gain_of(result, outcomes, now)
        if gain is None:
            return
        result.nights.append(
            {
                "day": (now - START).days,
                "answers": len(outcomes),
                "gain": round(gain.difference.value, 3),
                "low": round(gain.difference.low, 3),
                "high": round(gain.difference.high, 3),
                "differ": gain.disagreements,
                "promoted": gain.promotes,
            }
        )
        if not gain.promotes:
            return
        result.model = fit(outcomes, options)  # promoted: refit on every answer, served from now on
        champion_until.append(now - ignore)
        result.promotions += 1
        log.info(
            "%s: promoted (gain %.2f [%.2f, %.2f] a decision over %d differing decisions)",
            f"{now:%m-%d}", gain.difference.value, gain.difference.low, gain.difference.high,
            gain.disagreements,
        )  # fmt: skip
        runtime.models["acceptance"] = _serve(f"night-{now:%m%d}", result.model)

    return night


@dataclass
class SimulationReport:
    """The policies' results over the same simulated days and the OPE check."""

    days: int
    per_day: int
    results: dict[str, PolicyResult]
    ope_dr_value: float | None
    ope_dr_interval: tuple[float, float] | None
    ope_refusal: str | None
    truth_mean_gap: float

    def _expected(self) -> dict[str, float | None]:
        """The same ratios on expected accepted value: each shown action's true P(accept) x
        value, free of the answer draws' noise (one mortgage accepted or not moves the
        accepted value by thousands)."""
        static, learned, oracle, frozen = (
            self.results[name].expected
            for name in ("static", "learned", "oracle", "learned_frozen")
        )
        return {
            "expected_learned_over_static": round(learned / static, 4) if static else None,
            "expected_learned_to_oracle": round(learned / oracle, 4) if oracle else None,
            "expected_oracle_over_static": round(oracle / static, 4) if static else None,
            "expected_frozen_over_static": round(frozen / static, 4) if static else None,
        }

    def summary(self) -> dict[str, Any]:
        """The benchmark's figures."""
        static = self.results["static"].value
        learned = self.results["learned"].value
        oracle = self.results["oracle"].value
        frozen = self.results["learned_frozen"]
        frozen_per = frozen.value / max(frozen.decisions, 1)
        frozen_expected = frozen.expected / max(frozen.decisions, 1)
        return {
            "days": self.days,
            "requests_per_day": self.per_day,
            "static_value": round(static, 2),
            "learned_value": round(learned, 2),
            "oracle_value": round(oracle, 2),
            "learned_over_static": round(learned / static, 4) if static else None,
            "learned_to_oracle": round(learned / oracle, 4) if oracle else None,
            **self._expected(),
            "ope_dr_value_per_decision": self.ope_dr_value,
            "ope_dr_interval": self.ope_dr_interval,
            "ope_refusal": self.ope_refusal,
            "learned_frozen_value_per_decision": round(frozen_per, 4),
            "learned_frozen_expected_per_decision": round(frozen_expected, 4),
            "ope_dr_rel_error": _relative_error(self.ope_dr_value, frozen_expected),
            "ope_dr_rel_error_realised": _relative_error(self.ope_dr_value, frozen_per),
            "truth_mean_max_gap": round(self.truth_mean_gap, 6),
            "policies": {name: r.as_dict() for name, r in self.results.items()},
            "learned_promotions": [n for n in self.results["learned"].nights if n["promoted"]],
            "learned_gain_interval_median_width": _median_width(self.results["learned"].nights),
        }


def _relative_error(estimate: float | None, simulated: float) -> float | None:
    """|estimate - simulated| / simulated (None: no estimate or nothing simulated)."""
    if estimate is None or simulated <= 0:
        return None
    return round(abs(estimate - simulated) / simulated, 4)


def _median_width(nights: Sequence[Mapping[str, Any]]) -> float | None:
    """The median width of the nightly paired gain intervals (None: no night compared)."""
    widths = [n["high"] - n["low"] for n in nights]
    return round(float(np.median(widths)), 3) if widths else None


def simulate(
    settings: Settings,
    days: int = 60,
    per_day: int = 200,
    seed: int = 7,
    folder: Path | None = None,
    rule: str = "holdout",
) -> SimulationReport:
    """Replay `days` of traffic for the static, learned and oracle policies (and the frozen
    learned one) on a trained, scored sample-bank home.

    Raises:
        LoyalError: the home has no sample-bank truth or no served customers.
    """
    from features.tables_io import read_contract
    from loyal.errors import LoyalError
    from samplebank.truth import truth_folder
    from serving.catalogs import load_home_catalog
    from simulation.truth import mean_by_offer
    from training.acceptance import catalog_priors

    catalog, _ = load_home_catalog(settings, settings.serving)
    try:
        truth = load_or_draw(truth_folder(settings), catalog)
    except FileNotFoundError:
        raise LoyalError(
            "simulate needs the generated sample bank's ground truth "
            f"({truth_folder(settings)}); run `loyal run --no-serve` on the sample bank first"
        ) from None
    means = mean_by_offer(truth, catalog)
    gap = max(abs(means[o.id] - o.p_accept) for o in catalog.offers)
    known = set(read_contract(settings, only=["customers"])["customers"]["customer_id"].astype(str))
    candidates = sorted(c for c in truth.customers if c in known)
    probe = _runtime(
        settings, (folder or settings.paths.runtime_dir / "simulation") / "probe", 0.0, _Clock()
    )
    served = {c.customer_id: c.features for c in probe._customers(candidates) if c.known}
    if not served:
        raise LoyalError("simulate: no customer of the truth is in the loaded data")
    pool, weights = interaction_pool(served, list(catalog.channels))
    traffic = requests(pool, weights, days, per_day, seed)
    folder = folder or settings.paths.runtime_dir / "simulation"
    priors = catalog_priors(settings)
    ignore = timedelta(hours=settings.decisions.ignore_after_hours)
    share = settings.decisions.explore_share
    results: dict[str, PolicyResult] = {}
    for name, explore in (("static", share), ("learned", share), ("oracle", 0.0)):
        clock = _Clock()
        runtime = _runtime(settings, folder / name, explore, clock)
        runtime.models.pop("acceptance", None)
        nightly = None
        if name == "oracle":
            runtime.models["acceptance"] = _serve("truth", truth)
        if name == "learned":
            nightly = nightly_retraining(runtime, priors, ignore, settings.decisions, rule)
        results[name] = run_policy(name, runtime, clock, traffic, truth, nightly)
    final = results["learned"].model
    learned_log = results["learned"].log
    if final is None and learned_log is not None:
        # never promoted: the OPE check still judges what the log's answers would have taught
        answered = closed_outcomes(learned_log, START + timedelta(days=days + 30), ignore)
        final = fit(answered, settings.decisions) if answered else None
    clock = _Clock()
    runtime = _runtime(settings, folder / "learned_frozen", 0.0, clock)
    runtime.models.pop("acceptance", None)
    if final is not None:
        runtime.models["acceptance"] = _serve("final", final)
    results["learned_frozen"] = run_policy("learned_frozen", runtime, clock, traffic, truth)
    ope_value, interval, refusal = _ope(results["static"], final, priors, ignore, days)
    return SimulationReport(days, per_day, results, ope_value, interval, refusal, gap)


def _ope(
    static: PolicyResult,
    model: AcceptanceModel | None,
    priors: dict[str, float],
    ignore: timedelta,
    days: int,
) -> tuple[float | None, tuple[float, float] | None, str | None]:
    """DR estimate of the frozen learned policy's value per decision from the static log."""
    if model is None or static.log is None:
        return None, None, "no learned model to evaluate"
    end = START + timedelta(days=days + 30)
    outcomes = closed_outcomes(static.log, end, ignore)
    frame = ope_frame(outcomes, priors)
    estimate = policy_value(frame, predict_frame(model, frame))
    share = len(outcomes) / max(static.decisions, 1)  # decisions without an action earn 0
    best = estimate.best
    return (
        round(best.value * share, 4),
        (round(best.low * share, 4), round(best.high * share, 4)),
        estimate.refusal,
    )
