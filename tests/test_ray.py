"""kinema serve --ray: jobs on a pool of Ray actors, tested on Ray's in-process multi-node cluster.

One cluster for the module (tests/ray_cluster.py: a head with no CPU, so workers land only on the two worker nodes
of one CPU each). The backends (tests/ray_backends.py) sleep a step at a time, so jobs can be watched, cancelled
and lost mid-way. Without Ray these tests skip, except under CI=true.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from polling import wait_final
from ray_cluster import backends, ray_cluster, server  # noqa: F401 (backends is a fixture)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ray_cluster(2, tmp_path_factory.mktemp("worker-home")) as made:
        yield made


def _infos(client) -> dict:
    import ray

    slots = client.app.state.manager.pool.slots
    return {slot.name: ray.get(slot.handle.info.remote(), timeout=60) for slot in slots}


def _submit(client, model="slow", steps=10) -> str:
    response = client.post("/v1/videos", json={"prompt": "p", "model": model, "steps": steps, "seconds": 0.5})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _wait_step(client, video_id, step=2, timeout=60.0):
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/videos/{video_id}").json()["kinema"]["step"] < step:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.05)


pytestmark = pytest.mark.usefixtures("backends")


def test_jobs_spread_over_two_nodes_and_reuse_the_loaded_worker(cluster, kinema_env):
    """Two jobs at once run on both worker nodes; a job for a model a worker holds goes there and loads nothing;
    progress events with previews reach /events' subscribers; the clip is signed and written on the server."""
    with server(cluster, kinema_env) as client:
        manager = client.app.state.manager
        before = _infos(client)
        events: list = []
        first, second = _submit(client), _submit(client)
        snapshot, unsubscribe = manager.subscribe(first, events.append)
        assert wait_final(client, first)["status"] == "completed"
        assert wait_final(client, second)["status"] == "completed"
        unsubscribe()
        after = _infos(client)
        assert sorted(after[n]["started"] - before[n]["started"] for n in after) == [1, 1]
        assert len({info["node"] for info in after.values()}) == 2
        progress = [e for e in events if e.name == "progress"]
        assert progress and progress[-1].data["step"] == 10
        assert any("preview_jpeg_base64" in e.data for e in progress)
        assert client.get(f"/v1/videos/{first}/content").content[4:8] == b"ftyp"
        from kinema.media.provenance import verify

        assert verify(manager.artifact(first, "video.mp4")).exit_code == 0  # signed with the server's key

        # Residency: slow2 loads on one worker; the next slow2 job goes to that worker and loads nothing.
        one = _submit(client, "slow2", steps=3)
        assert wait_final(client, one)["status"] == "completed"
        loaded = _infos(client)
        two = _submit(client, "slow2", steps=3)
        assert wait_final(client, two)["status"] == "completed"
        again = _infos(client)
        assert sum(again[n]["loads"] for n in again) == sum(loaded[n]["loads"] for n in loaded)
        holder = [n for n in again if ["slow2", None] in again[n]["resident"]]
        assert len(holder) == 1 and again[holder[0]]["started"] == loaded[holder[0]]["started"] + 1


def test_a_model_no_worker_has_fails_at_once_naming_it(cluster, kinema_env):
    from ray_backends import Slow

    from kinema import hookimpl
    from kinema.plugins import pm

    class ServerOnly(Slow):
        name = "server-only"

    class Plugin:
        __name__ = "server-only"

        @hookimpl
        def register_backends(self, register):
            register(ServerOnly())

    pm.register(Plugin(), name="server-only")
    try:
        with server(cluster, kinema_env) as client:
            started = time.monotonic()
            response = client.post("/v1/videos", json={"prompt": "p", "model": "server-only"})
            assert response.status_code == 409
            message = response.json()["error"]["message"]
            assert "no Ray worker can run 'server-only'" in message and "worker node" in message
            response = client.post("/v1/videos", json={"prompt": "p", "model": "ltx2"})
            assert response.status_code == 409 and "ltx2" in response.json()["error"]["message"]
            assert time.monotonic() - started < 10
            assert client.get("/v1/videos").json()["data"] == []
    finally:
        pm.unregister(name="server-only")


def test_cancel_stops_a_running_job_within_a_step(cluster, kinema_env):
    with server(cluster, kinema_env) as client:
        video_id = _submit(client, steps=100)
        _wait_step(client, video_id)
        asked = time.monotonic()
        assert client.post(f"/v1/videos/{video_id}/cancel").status_code == 200
        video = wait_final(client, video_id, timeout=30)
        assert video["error"]["code"] == "cancelled" and video["kinema"]["status"] == "cancelled"
        assert time.monotonic() - asked < 5
        assert client.app.state.manager.artifact(video_id, "video.mp4") is None
        assert all(not info["running"] for info in _infos(client).values())  # the worker stopped too


def test_a_restarted_server_reattaches_and_loses_nothing(cluster, kinema_env):
    """The server stops mid-job; the worker keeps generating; the next server joins that generation."""
    with server(cluster, kinema_env) as client:
        video_id = _submit(client, steps=40)
        _wait_step(client, video_id)
        before = _infos(client)
    with server(cluster, kinema_env) as client:
        video = wait_final(client, video_id, timeout=60)
        assert video["status"] == "completed", video
        after = _infos(client)
        assert sum(after[n]["started"] - before[n]["started"] for n in after) == 0  # joined, not run again
        assert client.app.state.manager.get(video_id)["attempts"] == 1


def test_a_node_lost_mid_job_runs_it_once_more_elsewhere(cluster, kinema_env):
    """Kill the node under a running job: the job completes on the other node, once, on its second attempt."""
    made, nodes, _ = cluster
    with server(cluster, kinema_env) as client:
        video_id = _submit(client, steps=30)
        _wait_step(client, video_id)
        slot = next(s for s in client.app.state.manager.pool.slots if s.job == video_id)
        node = next(n for n in nodes if n.node_id == slot.info["node"])
        done: list = []
        threading.Thread(target=lambda: done.append(wait_final(client, video_id, timeout=120))).start()
        made.remove_node(node, allow_graceful=False)
        deadline = time.monotonic() + 150
        while not done:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert done[0]["status"] == "completed", done[0]
        record = client.app.state.manager.get(video_id)
        assert record["attempts"] == 2
        assert client.get(f"/v1/videos/{video_id}/content").status_code == 200


def test_ray_is_never_imported_without_the_flag():
    code = "import sys, kinema.cli, kinema.server.app, kinema.server.jobs; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_an_unreachable_ray_is_one_clear_error(kinema_env):
    result = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "serve", "--port", "0", "--ray", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Ray at '127.0.0.1:9'" in lines[0] and "ray start --head" in lines[0]


def test_a_worker_of_another_version_is_refused():
    from kinema.server.ray_pool import Pool, Slot, WorkerVersionError

    class Ref:
        pass

    pool = Pool()
    slot = Slot("kinema-worker-0", None)
    info = {"version": "0.0.1-old", "host": "gpu-7"}
    pytest.importorskip("ray")
    import ray

    original = ray.get
    ray.get = lambda ref, **kw: info  # type: ignore[assignment]
    try:
        with pytest.raises(WorkerVersionError, match="gpu-7 runs kinema 0.0.1-old"):
            pool._take_info(slot, Ref())
    finally:
        ray.get = original
