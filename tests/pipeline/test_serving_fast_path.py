"""The request path's kept work (rankings, churn answers) never changes an answer.

One runtime answers a stream of requests the way a worker does, keeping what it may (rows read
from the store, churn answers, rankings, decisions without contact history); a reference runtime
forgets everything it kept before each request. Over many real customers
(the trained and scored sample bank), every channel, with and without context, and after a
decline is recorded, both give the same answers, and the trust rules still hold.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from loyal.settings import Settings
from serving.runtime import Runtime
from serving.schemas import FeedbackRequest, NextBestActionRequest, NextBestActionResponse
from serving.wire import encode_answer

pytestmark = pytest.mark.pipeline

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CONTEXTS = (
    None,
    {"idle_cash": 9000.0},
    {"idle_cash": 0.0, "balance_checking": 150.0},
    {"logins_30d": 40},
)


def _start(settings: Settings, feedback_db: Path) -> Runtime:
    options = settings.serving.model_copy(update={"feedback_db": feedback_db})
    runtime = Runtime.start(settings, options)
    runtime.clock = lambda: NOW
    return runtime


def _comparable(answer: NextBestActionResponse) -> dict[str, object]:
    return answer.model_dump(exclude={"decision_id"})


def _forget(runtime: Runtime) -> None:
    runtime._ranked.clear()
    runtime._churned.clear()
    runtime._decided.clear()
    local = getattr(runtime._reader, "_local", None)
    if local is not None:  # the reader's connection and rows: a thread seen for the first time
        vars(local).clear()


def test_kept_work_gives_the_answers_of_a_runtime_that_keeps_nothing(
    scored_bank_home: Settings, tmp_path: Path
) -> None:
    feedback_db = tmp_path / "feedback.db"
    fast = _start(scored_bank_home, feedback_db)
    reference = _start(scored_bank_home, feedback_db)
    customers = pd.read_parquet(scored_bank_home.paths.contract_dir / "customers.parquet")
    ids = customers["customer_id"].astype(str).sample(40, random_state=3).tolist()
    rng = random.Random(11)
    requests = [
        NextBestActionRequest(
            customer_id=cid,
            channel=channel,
            k=rng.choice((1, 3)),
            context=rng.choice(CONTEXTS),
            explain=rng.random() < 0.3,
        )
        for cid in [*ids, *ids[:20], "UNKNOWN-1"]
        for channel in rng.sample(fast.catalog.channels, 3)
    ]
    rng.shuffle(requests)
    with_actions = 0
    for request in requests:
        _forget(reference)
        answer = fast.next_best_action(request)
        assert _comparable(answer) == _comparable(reference.next_best_action(request)), request
        assert json.loads(encode_answer(answer)) == json.loads(answer.model_dump_json())
        with_actions += bool(answer.actions)
        if not answer.cold_start and request.context:
            assert answer.context_used == sorted(request.context)
    assert with_actions > len(requests) // 2

    # A decline is honoured at once by the runtime that kept its work.
    shown = next(
        (r, a)
        for r in requests
        for a in [fast.next_best_action(r)]
        if a.actions and a.actions[0].kind != "service"
    )
    request, answer = shown
    fast.feedback(
        FeedbackRequest(
            customer_id=request.customer_id,
            action_id=answer.actions[0].action_id,
            channel=request.channel,
            outcome="declined",
            ts=NOW,
        )
    )
    _forget(reference)
    after = fast.next_best_action(request)
    assert answer.actions[0].action_id not in [a.action_id for a in after.actions]
    assert _comparable(after) == _comparable(reference.next_best_action(request))


def test_the_sqlite_reader_keeps_rows_only_until_the_store_is_written(
    scored_bank_home: Settings, tmp_path: Path
) -> None:
    from features.store import open_store
    from serving.online import SqliteReader, _entity_key

    store = open_store(scored_bank_home)
    online = tmp_path / "online.db"
    shutil.copy(store.config.online_store.path, online)
    store.config.online_store.path = str(online)
    reader = SqliteReader(store, "nba_v1")
    customers = pd.read_parquet(scored_bank_home.paths.contract_dir / "customers.parquet")
    ids = customers["customer_id"].astype(str).head(60).tolist()
    rows = {cid: reader.read([cid])[0] for cid in ids}
    cash = {cid: row["idle_cash"] for cid, row in rows.items() if row and row["idle_cash"]}
    (first, low), *_, (second, high) = sorted(cash.items(), key=lambda item: item[1])
    assert low != high
    kept = reader.read([first])[0]
    assert kept is not None and kept == rows[first]
    kept["idle_cash"] = -1.0  # a caller changing its copy changes nothing kept
    assert reader.read([first])[0] == rows[first]

    version = store.config.entity_key_serialization_version
    with sqlite3.connect(online) as writer:  # another connection, as a materialization
        (table,) = {
            name
            for (name,) in writer.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if writer.execute(
                f'SELECT 1 FROM "{name}" WHERE feature_name = ? LIMIT 1', ("idle_cash",)
            ).fetchone()
        }
        writer.execute(
            f'UPDATE "{table}" SET value = (SELECT value FROM "{table}" '
            "WHERE entity_key = ? AND feature_name = 'idle_cash') "
            "WHERE entity_key = ? AND feature_name = 'idle_cash'",
            (_entity_key(second, version), _entity_key(first, version)),
        )
    after = reader.read([first])[0]
    assert after is not None and after["idle_cash"] == cash[second]
    assert after == SqliteReader(store, "nba_v1").read([first])[0]
