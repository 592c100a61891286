"""The production profile logs decisions to the local PostgreSQL server."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from decisions.log import Candidate, Decision, DecisionLog
from decisions.record import log_target
from loyal.settings import Settings

pytestmark = pytest.mark.service


def test_the_production_profile_logs_decisions_and_answers_in_postgresql(
    settings: Settings,
) -> None:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", 5432)) != 0:
            pytest.skip("the production profile needs PostgreSQL on 127.0.0.1:5432")
    from sqlalchemy import create_engine, text

    settings.profile = "production"
    assert str(log_target(settings)).startswith("postgresql://")
    name = f"loyal_decisions_{uuid.uuid4().hex[:8]}"
    settings.decisions.url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    now = datetime.now(UTC)
    try:
        log = DecisionLog(log_target(settings))  # creates the database
        candidate = Candidate("hys_open", 3.0, 0.05, 80.0, 1.0, 0.95, True, 0.95)
        log.record(Decision("d-1", now, "C1", "web", "p", False, "hys_open", 0.95, (candidate,),
                            ("hys_open",), {"churn": "3"}, {"tier": "gold"}))  # fmt: skip
        assert log.answer("C1", "hys_open", "accepted", now + timedelta(minutes=1)) == "d-1"
        log.close()
        again = DecisionLog(log_target(settings))
        (outcome,) = again.outcomes(now, timedelta(hours=72))
        assert outcome.outcome == "accepted" and outcome.decision.propensity == 0.95
        assert outcome.decision.features == {"tier": "gold"}
        again.close()
    finally:
        admin = create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
