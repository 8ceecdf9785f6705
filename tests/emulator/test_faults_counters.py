"""Fault injection and request counters, from Python and over the control endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from encord.exceptions import RateLimitExceededError, UnknownException
from encord.user_client import EncordUserClient
from encord.workflow import AgentStage

from infra.emulator import Emulator, FaultRule, SeededFixture
from infra.emulator.faults import Faults

TASKS_ROUTE = "GET /v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/tasks"


@pytest.fixture
def agent_stage(
    encord_client: EncordUserClient, basic_project: SeededFixture
) -> Iterator[AgentStage]:
    project = encord_client.get_project(basic_project.project_hash)
    yield project.workflow.get_stage(name="Agent 1", type_=AgentStage)


def test_sdk_retries_429_with_retry_after_and_succeeds(
    emulator: Emulator, agent_stage: AgentStage
) -> None:
    rule = emulator.faults.add(FaultRule(endpoint="*/tasks", sequence=[429, 429], retry_after=0))
    emulator.counters.reset()
    assert len(list(agent_stage.get_tasks())) == 20
    assert emulator.counters.get(TASKS_ROUTE) == 3
    assert emulator.counters.injected() == {f"429 {TASKS_ROUTE}": 2}
    assert rule.injected == 2


def test_sdk_retries_503_and_succeeds(emulator: Emulator, agent_stage: AgentStage) -> None:
    emulator.faults.add(FaultRule(endpoint=TASKS_ROUTE, sequence=[503, 503, 503], retry_after=0))
    emulator.counters.reset()
    assert len(list(agent_stage.get_tasks())) == 20
    assert emulator.counters.get(TASKS_ROUTE) == 4  # the SDK allows 3 retries


def test_persistent_faults_surface_as_sdk_errors(
    emulator: Emulator, agent_stage: AgentStage
) -> None:
    emulator.faults.add(FaultRule(endpoint=TASKS_ROUTE, rate=1.0, status=429, retry_after=0))
    with pytest.raises(RateLimitExceededError):
        list(agent_stage.get_tasks())
    emulator.faults.clear()
    emulator.faults.add(FaultRule(endpoint=TASKS_ROUTE, rate=1.0, status=500, max_count=4))
    with pytest.raises(UnknownException):
        list(agent_stage.get_tasks())
    assert len(list(agent_stage.get_tasks())) == 20  # max_count reached: healthy again


def test_rpc_faults_and_dropped_connections(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = encord_client.get_project(basic_project.project_hash)
    emulator.faults.add(
        FaultRule(endpoint="RPC labelrowmetadata.*", sequence=["drop", 503, "ok"], retry_after=0)
    )
    emulator.counters.reset()
    assert len(project.list_label_rows_v2()) == 20
    assert emulator.counters.get("RPC labelrowmetadata.GET") == 3
    assert emulator.counters.injected() == {
        "drop RPC labelrowmetadata.GET": 1,
        "503 RPC labelrowmetadata.GET": 1,
    }


def test_latency_and_regex_patterns(emulator: Emulator, agent_stage: AgentStage) -> None:
    emulator.faults.add(FaultRule(endpoint=r"re:^GET .*/tasks$", latency_ms=150, jitter_ms=50))
    started = time.monotonic()
    list(agent_stage.get_tasks())
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 2.0


def test_rate_decisions_are_deterministic_with_a_seed() -> None:
    def run() -> list[object]:
        faults = Faults(seed=42)
        faults.add(FaultRule(endpoint="GET *", rate=0.3, status=503, drop_rate=0.1))
        return [faults.decide("GET /x").action for _ in range(200)]

    first, second = run(), run()
    assert first == second
    assert 20 < sum(1 for a in first if a == 503) < 90 and "drop" in first
    assert Faults(seed=1).decide("POST /x").action is None


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        FaultRule(status=404)
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultRule(rate=2)
    with pytest.raises(ValueError, match="sequence entry"):
        FaultRule(sequence=["later"])  # type: ignore[list-item]


def test_control_endpoints(
    emulator: Emulator, agent_stage: AgentStage, basic_project: SeededFixture
) -> None:
    base = f"{emulator.domain}/_emulator"
    assert requests.delete(f"{base}/counters", timeout=5).status_code == 204
    list(agent_stage.get_tasks())
    body = requests.get(f"{base}/counters", timeout=5).json()
    assert body["counters"] == {TASKS_ROUTE: 1} and body["encord_total"] == 1

    added = requests.post(
        f"{base}/faults",
        json={"endpoint": "*/tasks", "sequence": [429], "retry_after": 0},
        timeout=5,
    )
    assert added.status_code == 200 and added.json()[0]["sequence"] == [429]
    assert len(list(agent_stage.get_tasks())) == 20
    assert requests.get(f"{base}/counters", timeout=5).json()["counters"][TASKS_ROUTE] == 3
    bad = requests.post(f"{base}/faults", json={"endpoint": "*", "status": 404}, timeout=5)
    assert bad.status_code == 400 and "status" in bad.json()["message"]
    assert requests.delete(f"{base}/faults", timeout=5).status_code == 204
    assert emulator.faults.rules() == []

    projects = requests.get(f"{base}/projects", timeout=5).json()
    assert projects[basic_project.project_hash]["counts"] == {"Agent 1": 20, "Complete": 0}
    task_uuid = basic_project.task_uuids["Agent 1"][0]
    task = requests.get(f"{base}/tasks/{task_uuid}", timeout=5).json()
    assert task["stage"]["title"] == "Agent 1" and task["history"][0]["action"] == "CREATED"
    seeded = requests.post(f"{base}/seed", json={"fixture": "basic"}, timeout=30).json()
    assert seeded["project_hash"] in emulator.project_hashes
    key = requests.post(
        f"{base}/keys", json={"project_hashes": [seeded["project_hash"]]}, timeout=5
    ).json()
    client = emulator.user_client(ssh_private_key=key["ssh_private_key"])
    assert client.get_project(seeded["project_hash"]).project_hash == seeded["project_hash"]
    # Control requests are never counted.
    assert not any(
        name.startswith(("GET /_emulator", "UNMATCHED")) for name in emulator.counters.snapshot()
    )


def test_unknown_routes_are_counted_as_unmatched(emulator: Emulator) -> None:
    emulator.counters.reset()
    response = requests.get(f"{emulator.domain}/v2/public/nothing/here", timeout=5)
    assert response.status_code == 404
    assert emulator.counters.snapshot() == {"UNMATCHED GET /v2/public/nothing/here": 1}
