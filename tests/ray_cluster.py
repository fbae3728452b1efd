"""Ray's in-process multi-node cluster for the Ray tests (tests/test_ray.py, tests/test_ray_lost.py): one a module.

A head with no CPU, so kinema's workers land only on the worker nodes of one CPU each; small object stores, no
dashboard, short health checks. Without Ray the tests skip, except under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
STORE = 80 * 2**20  # Ray's smallest object store
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@contextmanager
def ray_cluster(worker_nodes: int, worker_home: Path) -> Iterator[tuple]:
    """(cluster, its worker nodes, the env kinema's workers get), with this process joined to it."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("Ray is not installed (tests/setup.sh installs kinema[test], which brings it)")
        pytest.skip("Ray is not installed: pip install 'kinema[ray]'")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": STORE,
            "include_dashboard": False,
            "_system_config": HEALTH,
        },
    )
    nodes = [cluster.add_node(num_cpus=1, object_store_memory=STORE) for _ in range(worker_nodes)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="kinema", logging_level="warning")
    env = {
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "KINEMA_HOME": str(worker_home),
        "KINEMA_LOAD_PLUGINS": "",
        "KINEMA_DEVICE": "cpu",
        "KINEMA_TEST_WORKER_FRAMES": "6",  # the slow backends' limit on the workers (the server's own: 257)
    }
    try:
        yield cluster, nodes, env
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def backends():
    """The slow test backends (tests/ray_backends.py) on the server too (it plans jobs; the workers run them)."""
    import ray_backends

    from kinema.plugins import load_plugins, pm

    load_plugins()
    pm.register(ray_backends, name="ray_backends")
    try:
        yield
    finally:
        pm.unregister(name="ray_backends")


def server(ray_cluster, home, **pool_options):
    """A TestClient of a kinema server on the cluster (enter it with ``with``)."""
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app
    from kinema.server.ray_pool import Pool, RayJobManager

    cluster, _, env = ray_cluster
    options = {"plugins": ("ray_backends",), "env": env, **pool_options}
    manager = RayJobManager(home, address=cluster.address, pool=Pool(**options))
    return TestClient(create_app(api_key=None, manager=manager), base_url="http://127.0.0.1")
