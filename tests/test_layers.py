"""kinema's layers hold (the import-linter contracts in pyproject.toml), no module imports itself round a cycle, and
``import kinema`` stays cheap. The contracts are also shown to fail when a violation is planted in a copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import kinema

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# What `import kinema` must not load: the model stacks load with the first clip, the server's web stack with the server.
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "peft", "cv2", "onnxruntime", "c2pa", "fastapi", "uvicorn")


def lint_imports(cwd: Path, source: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if source is not None:  # a copy of the package comes first on the path, before the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("path", "planted", "expected"),
    [
        # An import inside a function counts like one at the top: a backend may never reach up to the server.
        (
            "backends/planted.py",
            "def f():\n    from kinema.server import app\n",
            "kinema.backends.planted -> kinema.server",
        ),
        ("client.py", "def _planted():\n    from kinema.errors import KinemaError\n", "kinema.client -> kinema.errors"),
        ("world/scene.py", "def _planted():\n    import torch\n", "kinema.world.scene -> torch"),
    ],
    ids=["backend-imports-server", "client-imports-kinema", "world-scene-imports-torch"],
)
def test_a_planted_violation_breaks_the_contracts(tmp_path, path, planted, expected):
    source = tmp_path / "core"
    shutil.copytree(
        ROOT / "core" / "kinema", source / "kinema", ignore=shutil.ignore_patterns("__pycache__", "weights")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = source / "kinema" / path
    target.write_text((target.read_text() + "\n\n" if target.exists() else "") + planted)
    result = lint_imports(tmp_path, source)
    assert result.returncode != 0, result.stdout
    assert "0 broken" not in result.stdout
    assert expected in result.stdout, result.stdout


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import one another round a cycle (more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_strongly_connected_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_of_kinema_imports_itself_round_a_cycle():
    # Lazy imports (inside functions) count; imports under `if TYPE_CHECKING:` never run, so they do not.
    graph = grimp.build_graph("kinema", exclude_type_checking_imports=True, cache_dir=None)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycles = strongly_connected(edges)
    assert cycles == [], "\n".join(
        " -> ".join(graph.find_shortest_chain(importer=group[0], imported=group[1]) or group) for group in cycles
    )


def test_the_standalone_client_imports_nothing_of_kinema():
    graph = grimp.build_graph("kinema", exclude_type_checking_imports=True, cache_dir=None)
    assert graph.find_modules_directly_imported_by("kinema.client") == set()


def test_import_kinema_loads_no_torch_and_no_server():
    code = f"import json, sys; import kinema; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout) == []
    assert kinema.__version__  # the facade still has its version (kinema.version)
