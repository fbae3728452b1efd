"""Users of one server: each sees only their own jobs, on every route that names one; the master key sees all."""

import hashlib
import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from polling import wait_final

from kinema.cameo.store import SERVER_OWNER
from kinema.server.app import create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MASTER = "master-secret"
SMALL = {"size": "32x32", "seconds": "0.375", "steps": 2, "seed": 1}
UNKNOWN = "video_" + "0" * 32
# A body each POST route accepts, so that what bob gets can only come from whose job it is.
OLD_PLAN = {
    "width": 32,
    "height": 32,
    "num_frames": 9,
    "fps": "24",
    "seconds": 0.375,
    "steps": 2,
    "guidance": 3.0,
    "seed": 1,
    "notes": [],
    "audio": False,
}
BODIES = {"remix": {"prompt": "the same, in paper"}, "extend": {"seconds": "0.25"}}


@pytest.fixture
def server(kinema_env):
    from kinema.server.users import add_key

    keys = {user: {"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob")}
    keys["master"] = {"Authorization": f"Bearer {MASTER}"}
    with TestClient(create_app(api_key=MASTER), base_url="http://kinema.example") as client:
        yield client, keys


def job_routes(client):
    """Every (method, path) of the published API that names a job: the test covers routes added later too."""
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path) for path, operations in paths.items() if "{video_id}" in path for method in operations
    }
    return sorted(routes, key=lambda route: (route[0] == "DELETE", route))  # delete last, had it got through


def call(client, headers, method, path, video_id):
    url = path.replace("{video_id}", video_id)
    body = next((b for suffix, b in BODIES.items() if path.endswith(suffix)), None)
    return client.request(method, url, headers=headers, json=body)


def as_unknown(response, video_id):
    return response.status_code, response.text.replace(video_id, UNKNOWN)


def test_every_route_naming_a_job_hides_other_users_jobs(server):
    client, keys = server
    alice = client.post("/v1/videos", headers=keys["alice"], json={"prompt": "alice's fox", **SMALL}).json()
    alice = wait_final(client, alice["id"], headers=keys["alice"])
    assert alice["status"] == "completed"
    routes = job_routes(client)
    assert {path.rsplit("/", 1)[-1] for _, path in routes} >= {
        "{video_id}",
        "content",
        "provenance",
        "events",
        "remix",
        "extend",
        "cancel",
    }
    for method, path in routes:
        for variant in (
            ["?variant=video", "?variant=thumbnail", "?variant=spritesheet"] if path.endswith("content") else [""]
        ):
            theirs = call(client, keys["bob"], method, path + variant, alice["id"])
            missing = call(client, keys["bob"], method, path + variant, UNKNOWN)
            # Not 403: bob learns nothing, not even that the id exists.
            assert theirs.status_code == 404, (method, path, variant, theirs.text)
            assert as_unknown(theirs, alice["id"]) == as_unknown(missing, UNKNOWN)
    # Nothing bob tried reached alice's job: it is still there, whole, for her and for the master.
    for who in ("alice", "master"):
        assert client.get(f"/v1/videos/{alice['id']}", headers=keys[who]).json()["status"] == "completed"
        assert client.get(f"/v1/videos/{alice['id']}/content", headers=keys[who]).status_code == 200
    events = client.get(f"/v1/videos/{alice['id']}/events", headers=keys["alice"])
    assert events.status_code == 200 and "event: completed" in events.text
    assert client.get("/v1/videos", headers=keys["alice"]).json()["data"][0]["id"] == alice["id"]


def test_follow_up_jobs_and_storyboards_belong_to_who_asked(server):
    client, keys = server
    alice = client.post("/v1/videos", headers=keys["alice"], json={"prompt": "a fox", **SMALL}).json()
    assert wait_final(client, alice["id"], headers=keys["alice"])["status"] == "completed"
    made = {
        "remix": client.post(f"/v1/videos/{alice['id']}/remix", headers=keys["alice"], json={"prompt": "paper"}),
        "extend": client.post(f"/v1/videos/{alice['id']}/extend", headers=keys["alice"], json={"seconds": "0.25"}),
        "storyboard": client.post(
            "/v1/storyboards",
            headers=keys["alice"],
            json={"storyboard": "Shot 1 (0.4s): a fox", "size": "32x32", "steps": 2},
        ),
    }
    bobs = client.post("/v1/videos", headers=keys["bob"], json={"prompt": "bob's owl", **SMALL}).json()
    masters = client.post("/v1/videos", headers=keys["master"], json={"prompt": "the owner's", **SMALL}).json()
    ids = {kind: response.json()["id"] for kind, response in made.items()}
    assert all(response.status_code == 200 for response in made.values()), {k: r.text for k, r in made.items()}
    for video_id in ids.values():
        assert client.get(f"/v1/videos/{video_id}", headers=keys["bob"]).status_code == 404
        assert client.get(f"/v1/videos/{video_id}", headers=keys["alice"]).status_code == 200

    def listed(who, **query):
        return [v["id"] for v in client.get("/v1/videos", headers=keys[who], params=query).json()["data"]]

    assert set(listed("alice")) == {alice["id"], *ids.values()}
    assert listed("bob") == [bobs["id"]]
    assert set(listed("master")) == {alice["id"], *ids.values(), bobs["id"], masters["id"]}
    # Paging from another user's id is paging from an unknown id.
    assert (
        client.get("/v1/videos", headers=keys["bob"], params={"after": alice["id"]}).status_code == 404
    )  # another user's id is an unknown one
    assert listed("alice", after=ids["storyboard"], order="desc") == [ids["extend"], ids["remix"], alice["id"]]
    # The owner's own job is the owner's: users do not see it; the master acts on anyone's.
    assert client.get(f"/v1/videos/{masters['id']}", headers=keys["alice"]).status_code == 404
    for video_id in (*ids.values(), bobs["id"], masters["id"]):
        wait_final(client, video_id, headers=keys["master"])
        assert client.delete(f"/v1/videos/{video_id}", headers=keys["master"]).json()["deleted"] is True
    assert listed("master") == [alice["id"]]


def test_bob_cannot_cancel_or_delete_alices_queued_job(kinema_env):
    from kinema.server.users import add_key

    keys = {user: {"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob")}
    with TestClient(create_app(api_key=MASTER, start_workers=False), base_url="http://kinema.example") as client:
        queued = client.post("/v1/videos", headers=keys["alice"], json={"prompt": "waits", **SMALL}).json()
        assert client.post(f"/v1/videos/{queued['id']}/cancel", headers=keys["bob"]).status_code == 404
        assert client.delete(f"/v1/videos/{queued['id']}", headers=keys["bob"]).status_code == 404
        assert client.get(f"/v1/videos/{queued['id']}", headers=keys["alice"]).json()["status"] == "queued"
        assert (
            client.post(f"/v1/videos/{queued['id']}/cancel", headers=keys["alice"]).json()["kinema"]["status"]
            == "cancelled"
        )
        assert client.delete(f"/v1/videos/{queued['id']}", headers=keys["alice"]).json()["deleted"] is True


def test_without_keys_one_user_sees_everything_as_before(app_client):
    job = app_client.post("/v1/videos", json={"prompt": "mine", **SMALL}).json()
    assert [v["id"] for v in app_client.get("/v1/videos").json()["data"]] == [job["id"]]
    assert app_client.get(f"/v1/videos/{job['id']}").status_code == 200


def test_jobs_from_before_owners_are_the_owners(kinema_env):
    """A jobs.db written before the owner column: its jobs go to the server's owner, not to any user."""
    from kinema.server.jobs import JobManager, new_id
    from kinema.server.users import add_key

    directory = kinema_env / "jobs"
    directory.mkdir()
    old = sqlite3.connect(directory / "jobs.db")
    old.execute("""CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL, device TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL, prompt TEXT NOT NULL,
        request TEXT NOT NULL, plan TEXT NOT NULL, has_image INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
        started_at INTEGER, completed_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0, error_code TEXT, error_message TEXT)""")
    job_id = new_id()
    old.execute(
        "INSERT INTO jobs (id, status, device, model, backend, prompt, request, plan, created_at)"
        " VALUES (?, 'failed', 'cpu', 'tiny', 'tiny', 'old', ?, ?, 1)",
        (job_id, json.dumps({"prompt": "old", "user": "alice"}), json.dumps(OLD_PLAN)),
    )
    old.commit()
    old.close()
    manager = JobManager(kinema_env, start_workers=False).start()
    try:
        assert manager.get(job_id)["owner"] == SERVER_OWNER
        assert manager.find(job_id, "alice") is None and manager.find(job_id, SERVER_OWNER)["id"] == job_id
    finally:
        manager.stop()
    alice = {"Authorization": f"Bearer {add_key('alice')}"}
    with TestClient(create_app(api_key=MASTER, start_workers=False), base_url="http://kinema.example") as client:
        assert client.get("/v1/videos", headers=alice).json()["data"] == []
        master = {"Authorization": f"Bearer {MASTER}"}
        assert [v["id"] for v in client.get("/v1/videos", headers=master).json()["data"]] == [job_id]


def test_no_key_can_be_the_owner(kinema_env):
    """`kinema keys add` refuses the owner's identity, and a hand-edited key file cannot grant it."""
    from click.testing import CliRunner

    from kinema.cli import cli
    from kinema.server.users import add_key

    refused = CliRunner().invoke(cli, ["keys", "add", SERVER_OWNER])
    assert refused.exit_code != 0 and "not a valid kinema user name" in refused.output
    alice = add_key("alice")
    path = kinema_env / "api-keys.json"
    data = json.loads(path.read_text())
    data["users"][SERVER_OWNER] = {"sha256": hashlib.sha256(b"kinema-forged").hexdigest()}
    path.write_text(json.dumps(data))
    from kinema.server.users import list_users, user_for_key

    assert list_users() == ["alice"] and user_for_key(alice) == "alice" and user_for_key("kinema-forged") is None
    forged = {"Authorization": "Bearer kinema-forged"}
    with TestClient(create_app(api_key=MASTER, start_workers=False), base_url="http://kinema.example") as client:
        assert client.get("/v1/videos", headers=forged).status_code == 401
