"""The learning loop against the sample bank's hidden acceptance truth; print one JSON line.

    .venv/bin/python benchmarks/policy.py [--home PATH] [--days 60] [--per-day 200]
        [--seed 7] [--promotion holdout|crossfit|always]

On a trained, scored sample-bank home (`loyal run`; default: the configured home), replays the
same simulated days (in-process against the serving runtime, `simulation.run`) for the static
catalog policy, the learning policy (nightly retraining, OPE-gated promotion by `--promotion`)
and the oracle that knows the truth, and prints static_value, learned_value, oracle_value
(accepted value over the days), learned_over_static, learned_to_oracle, the same ratios on
expected accepted value (`expected_*`: each shown action's true P(accept) x value, free of the
answer draws' noise), each promotion night's paired gain, and ope_dr_rel_error: the doubly
robust estimate, from the static policy's exploration log, of the final learned policy's value
per decision against that policy's simulated expected value per decision
(`ope_dr_rel_error_realised`: against its realised accepted value). Targets: >= 1.2, >= 0.85,
< 0.10. Each run keeps its stores in its own folder, so runs of other sizes can go side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script, this folder would shadow packages


def main() -> None:
    """Parse arguments, simulate, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a trained, scored sample-bank home")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--promotion",
        choices=("crossfit", "holdout", "always"),
        default="holdout",
        help="nightly comparison: the latest week as holdout, cross-fitted on every answer, or "
        "none (always: serve every night's model; a diagnostic of what the gate costs)",
    )
    args = parser.parse_args()
    if args.home is not None:
        os.environ["LOYAL_HOME"] = str(args.home.resolve())
        config = args.home / "loyal.yaml"
        if config.is_file():
            os.environ["LOYAL_CONFIG"] = str(config.resolve())
    from loyal.logs import setup_logging
    from loyal.settings import load_settings
    from simulation.run import simulate

    settings = load_settings()
    setup_logging(settings.log_level)
    started = time.perf_counter()
    name = f"{args.days}d-{args.per_day}-{args.seed}-{args.promotion}"
    folder = settings.paths.runtime_dir / "simulation" / name
    report = simulate(settings, args.days, args.per_day, args.seed, folder, args.promotion)
    line = report.summary()
    line["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
