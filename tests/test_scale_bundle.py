"""benchmarks/scale_bundle.py: the GPU form of benchmarks/scale.py fits what a lent GPU machine takes.

Proved by running it: the reduced CPU form runs in this environment without importing PyAV, c2pa or kinema's
engine, and again with only the GPU machine's packages and the carried wheels (diffusers from its wheel), and
what would travel (working tree and wheels) stays within 64 MiB.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location(
        "kinema_benchmark_scale_bundle", ROOT / "benchmarks" / "scale_bundle.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def report(bundle, tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    return bundle.check(wheels, tmp_path_factory.mktemp("work")), wheels


def test_gpu_form_imports_no_engine_media_or_provenance(bundle, report):
    found, _wheels = report
    assert found["forbidden_imported"] == []  # av and c2pa are installed here, so this means never imported
    assert found["forbidden_imported_bare"] == []
    assert "benchmarks/scale.py" in found["repo_files"]
    assert all(path.startswith(("benchmarks/scale.py", "core/kinema/")) for path in found["repo_files"])
    assert "core/kinema/engine.py" not in found["repo_files"]


def test_gpu_form_runs_with_only_the_machines_packages_and_the_wheels(report):
    found, wheels = report
    assert Path(found["diffusers_from"]).parts[-3] == "site"  # installed from the wheel by pip --target
    assert "| Wan 2.2 TI2V-5B | standard |" in found["bare_table"]
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            assert archive.testzip() is None
            assert any(name.endswith(".dist-info/RECORD") for name in archive.namelist())


def test_what_travels_fits_in_64_mib(bundle, report):
    found, wheels = report
    sizes = found["sizes"]
    assert sizes["wheels"] == sum(path.stat().st_size for path in wheels.glob("*.whl")) > 0
    assert sizes["total"] == sizes["tree"] + sizes["wheels"] <= bundle.LIMIT_BYTES == 64 * 2**20
    assert found["failures"] == []
    assert found["command"].endswith("python3 benchmarks/scale.py --out $OUT")
