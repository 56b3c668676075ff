"""Replicas: four real ``modelladder serve`` processes on one PostgreSQL store behave as one
service. 16 clients per replica (64 in all), each answer's feedback sent to another replica:
exactly one run per answered request, every acknowledged feedback recorded. Then one replica
is killed with SIGKILL mid-load: only its in-flight requests are lost, the other replicas keep
answering, and the store stays consistent (no run without its attempts, no transaction left
open). The rungs are cloud rungs on an instant mock upstream (tests/support/mock_openai.py),
so the test measures the gateway and the store, not a model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelladder.traces import TraceStore
from modelladder.traces import migrations as mig
from tests.support.mock_openai import mock_upstream
from tests.support.models import free_port
from tests.support.replicas import LoadResult, Replica, fleet_file, run_load, start_replicas
from tests.support.traces import raw

pytestmark = [pytest.mark.server]

REPLICAS, CLIENTS_PER_REPLICA, REQUESTS_PER_CLIENT = 4, 16, 6
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def service(
    postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Replica], str]]:
    """Four replicas on a fresh PostgreSQL database, started once for this module."""
    url = postgres_server.new_database()
    tmp = tmp_path_factory.mktemp("replicas")
    with (
        mock_upstream() as upstream,
        start_replicas(REPLICAS, fleet_file(tmp / "fleet.toml", upstream), url, tmp) as replicas,
    ):
        yield replicas, url


def _report(name: str, r: LoadResult) -> None:
    rate = len(r.answered) / r.elapsed_s if r.elapsed_s else 0.0
    print(
        f"\n{name}: {len(r.answered)} answered, {len(r.feedback)} feedback acked in {r.elapsed_s:.1f} s "
        f"({rate:.0f} req/s); p50 {1e3 * r.percentile(0.5):.1f} ms, p99 {1e3 * r.percentile(0.99):.1f} ms; "
        f"statuses {dict(r.statuses)}, lost {dict(r.lost)}, refused {dict(r.refused)}, "
        f"feedback cut off {r.feedback_unacked}"
    )


def _check_consistent(url: str) -> None:
    """No run without attempts, attempt indexes dense, feedback only on runs, nothing half-open."""
    with raw(url) as db:
        orphans = db.execute(
            "SELECT COUNT(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = r.run_id)"
        ).fetchone()[0]
        gaps = db.execute(
            "SELECT COUNT(*) FROM (SELECT run_id FROM attempts GROUP BY run_id "
            "HAVING MAX(idx) + 1 <> COUNT(*) OR MIN(idx) <> 0) g"
        ).fetchone()[0]
        accepted = db.execute(
            "SELECT COUNT(*) FROM runs r WHERE r.outcome = 'resolved' AND (SELECT COUNT(*) FROM attempts a "
            "WHERE a.run_id = r.run_id AND a.accepted = 1) <> 1"
        ).fetchone()[0]
        assert (orphans, gaps, accepted) == (0, 0, 0)
        deadline = time.monotonic() + 10  # a killed client's backend ends once the kernel closes its socket
        while True:
            open_tx = db.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'"
            ).fetchone()[0]
            if open_tx == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert open_tx == 0


def _check_recorded(store: TraceStore, r: LoadResult) -> None:
    for run_id, (_replica, said) in r.answered.items():
        run = store.get_run(run_id)  # every answered request has its run (UnknownRunError if not)
        assert run.outcome == "resolved" and run.text, run_id
        assert run.text == said if said.startswith("echo ") else "get_weather" in run.text
    for run_id, success in r.feedback.items():
        assert store.get_run(run_id).feedback_success is success  # acknowledged feedback is in force


def test_replicas_are_one_service(service: tuple[list[Replica], str]) -> None:
    replicas, url = service
    r = run_load(replicas, CLIENTS_PER_REPLICA, REQUESTS_PER_CLIENT, deadline_s=DEADLINE_S)
    _report("4 replicas x 16 clients", r)
    assert not r.problems, r.problems[:5]
    total = REPLICAS * CLIENTS_PER_REPLICA * REQUESTS_PER_CLIENT
    assert sum(r.statuses.values()) == total and not r.lost and not r.refused
    assert len(r.answered) == r.statuses[200] == total - r.statuses[429] and len(r.answered) > total // 2
    assert {rep for rep, _ in r.answered.values()} == set(range(REPLICAS))  # every replica answered
    with TraceStore(url) as store:
        assert store.count_runs() == len(r.answered)  # exactly one run per answered request
        assert len(store.labels(source="feedback")) == len(r.feedback) == len(r.answered)  # none lost
        _check_recorded(store, r)
    _check_consistent(url)


def test_sigkill_of_one_replica_loses_only_its_in_flight_requests(service: tuple[list[Replica], str]) -> None:
    replicas, url = service
    with TraceStore(url) as store:
        runs_before, labels_before = store.count_runs(), len(store.labels(source="feedback"))
    r = run_load(replicas, CLIENTS_PER_REPLICA, REQUESTS_PER_CLIENT, deadline_s=DEADLINE_S, kill_after=120)
    _report("4 replicas x 16 clients, replica 0 SIGKILLed after 120 answers", r)
    assert replicas[0].proc.returncode == -9 and all(x.proc.poll() is None for x in replicas[1:])
    assert not r.problems, r.problems[:5]
    assert set(r.lost) <= {0} and r.lost[0] <= CLIENTS_PER_REPLICA  # at most one in flight per client
    assert set(r.refused) <= {0}  # after the kill, requests went to the live replicas
    total = REPLICAS * CLIENTS_PER_REPLICA * REQUESTS_PER_CLIENT
    assert len(r.answered) + r.statuses[429] + r.lost[0] == total  # everything else was answered
    assert {rep for rep, _ in r.answered.values()} == set(range(REPLICAS))
    with TraceStore(url) as store:
        new_runs = store.count_runs() - runs_before
        # a killed request may have been recorded before its answer was sent: at most the lost ones
        assert len(r.answered) <= new_runs <= len(r.answered) + r.lost[0]
        new_labels = len(store.labels(source="feedback")) - labels_before
        assert len(r.feedback) <= new_labels <= len(r.feedback) + r.feedback_unacked
        _check_recorded(store, r)
    _check_consistent(url)


# -- bad input on the command line -------------------------------------------------------------


def test_serve_with_an_unusable_store_exits_2(postgres_url: str, tmp_path: Path) -> None:
    from modelladder.cli import main

    with TraceStore(postgres_url) as s:
        s._db.execute(
            "INSERT INTO _migrations VALUES (?, 'from the future', '2099-01-01')", (mig.LATEST_VERSION + 1,)
        )
    fleet = fleet_file(tmp_path / "fleet.toml", "http://127.0.0.1:9/v1")
    for db, message in (
        (
            f"postgresql://u:pw@127.0.0.1:{free_port()}/x",
            "cannot connect to the trace store at postgresql://u:***@",
        ),
        (postgres_url, "newer than this modelladder"),
    ):
        result = CliRunner().invoke(
            main, ["serve", "--fleet", str(fleet), "--db", db, "--port", str(free_port())]
        )
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line and "pw" not in line.replace("***", "")
