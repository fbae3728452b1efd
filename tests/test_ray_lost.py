"""kinema serve --ray when the whole Ray cluster is lost: the server stays up and says so, nothing hangs.

A cluster of its own (a head and one worker node), since the test ends it. The server's process is a Ray driver:
without its GCS, Ray ends a driver after gcs_rpc_server_reconnect_timeout_s, which kinema.server.ray_pool.connect
lengthens; this cluster is joined here, so the test lengthens it the same way before joining.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polling import wait_final
from ray_cluster import backends, ray_cluster, server  # noqa: F401 (backends is a fixture)

pytestmark = pytest.mark.usefixtures("backends")
CHILD = "KINEMA_RAY_LOST_CHILD"


def test_a_lost_cluster_runs_in_a_process_of_its_own():
    """Ray may end the driver that saw its cluster die (a process already joined to another cluster keeps Ray's
    first reconnect timeout), and here the driver is pytest: in the full suite that ended the whole run. So the
    scenario below runs in a pytest of its own, and this test reports its result."""
    if os.environ.get(CHILD):
        pytest.skip("this is the child run")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "scenario",
        ],
        env={**os.environ, CHILD: "1"},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


@pytest.fixture(scope="module")
def lone_cluster(tmp_path_factory):
    from kinema.server.ray_pool import GCS_RECONNECT

    name, value = GCS_RECONNECT
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        with ray_cluster(1, tmp_path_factory.mktemp("worker-home")) as made:
            yield made
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _until(check, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


@pytest.mark.skipif(not os.environ.get(CHILD), reason="run by test_a_lost_cluster_runs_in_a_process_of_its_own")
def test_scenario_a_lost_cluster_is_shown_and_jobs_fail_with_the_reason_or_wait(lone_cluster, kinema_env):
    """Head and worker node killed while a job on its last attempt runs: /health says the cluster is lost, that job
    fails naming why, the job queued behind it waits, and a new one is still taken (and waits)."""
    from kinema.server.jobs import MAX_ATTEMPTS

    cluster, nodes, _ = lone_cluster
    with server(lone_cluster, kinema_env) as client:
        manager = client.app.state.manager
        manager.silent_s = 2.0
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["ray"]["state"] == "connected" and health["ray"]["ready"] == 1

        def post() -> str:
            response = client.post("/v1/videos", json={"prompt": "p", "model": "slow", "steps": 100, "seconds": 0.5})
            assert response.status_code == 200, response.text
            return response.json()["id"]

        running, waiting = post(), post()
        _until(lambda: client.get(f"/v1/videos/{running}").json()["kinema"]["step"] >= 2)
        manager._jobs._change("UPDATE jobs SET attempts = ? WHERE id = ?", (MAX_ATTEMPTS, running))  # its last

        cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)
        nodes[0].kill_all_processes(check_alive=False, allow_graceful=False)

        ray = _until(lambda: (h := client.get("/health").json()["ray"])["state"] == "lost" and h)
        assert client.get("/health").json()["status"] == "ok"
        assert "has not answered since" in ray["message"] and "queued jobs wait" in ray["message"]

        video = wait_final(client, running, timeout=120)
        assert video["error"]["code"] == "worker_lost"
        message = video["error"]["message"]
        assert "was lost" in message and "head is unreachable" in message and f"tried {MAX_ATTEMPTS} times" in message
        assert client.get(f"/v1/videos/{running}/content").status_code == 409  # no clip

        late = post()  # taken: it waits for the cluster with the others
        for job in (waiting, late):
            record = manager.get(job)
            assert record["status"] == "queued" and record["attempts"] == 0, record
