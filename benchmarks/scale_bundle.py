"""What the GPU form of ``benchmarks/scale.py`` takes to a bare GPU machine, built and checked here.

A lent GPU machine has torch (and a fixed set of other packages, ``ON_THE_MACHINE``) but not diffusers, reaches
nothing outside, and takes at most 64 MiB of files: the working tree that travels plus the wheels carried
beside it. This script

* writes the wheels the GPU form needs and the machine lacks (``BUNDLED``) into a folder (default ``.whl``),
  repacked from this environment's installed copies, so the versions are the ones tested here (no network);
* runs ``scale.py`` in its reduced CPU form twice: once in this full environment, recording every module it
  imports (PyAV, c2pa and kinema's engine are installed here, and must stay unimported), and once as the GPU
  machine would run it, with only the machine's packages and the wheels installed from the folder with
  ``pip install --target`` (diffusers from the wheel, not from this environment);
* adds up the working tree that travels (``git ls-files --cached --others --exclude-standard``) and the
  wheels, and checks the total against 64 MiB.

    python benchmarks/scale_bundle.py                    # build .whl, check, print the GPU command
    python benchmarks/scale_bundle.py --wheels DIR --json report.json

Exit status 1 when a check fails, with what failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCALE = ROOT / "benchmarks" / "scale.py"
LIMIT_BYTES = 64 * 2**20
# Never imported by the GPU form: the engine's media (PyAV), provenance (c2pa) and server stacks.
FORBIDDEN = ("av", "c2pa", "cv2", "fastapi", "uvicorn", "kinema.engine", "kinema.media", "kinema.server")
# Pure-Python distributions the machine lacks, carried as wheels (diffusers needs importlib_metadata on paper).
BUNDLED = ("diffusers", "importlib_metadata", "platformdirs")
# The lent machines' image (the device library's KINDS.md, "Python packages already there"), the part of it the
# GPU form can reach: torch and what it, diffusers and huggingface_hub import.
ON_THE_MACHINE = (
    "torch",
    "triton",
    "numpy",
    "typing_extensions",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "markupsafe",
    "filelock",
    "fsspec",
    "huggingface_hub",
    "hf_xet",
    "safetensors",
    "regex",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "pillow",
    "packaging",
    "pyyaml",
    "tqdm",
    "zipp",
    "click",
    "shellingham",
    "typer",
    "rich",
    "markdown_it_py",
    "mdurl",
    "pygments",
)
# The reduced form used as the proof: one model, small, a few seconds of CPU.
PROOF_ARGS = [
    "--device",
    "cpu",
    "--models",
    "wan-5b",
    "--layers",
    "1",
    "--narrow",
    "24",
    "--size",
    "64x64",
    "--seconds",
    "0.2",
    "--text-tokens",
    "8",
    "--steps-timed",
    "1",
    "--no-policies",
    "--threads",
    "1",
]
GPU_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site {wheels}/*.whl"
    " && PYTHONPATH=/tmp/site python3 benchmarks/scale.py --out {out}"
)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


# --------------------------------------------------------------------------- wheels


def repack_wheel(name: str, folder: Path) -> Path:
    """A wheel of the installed pure-Python distribution ``name``, from its installed files (RECORD rewritten)."""
    dist = importlib.metadata.distribution(name)
    info = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in info:
        raise SystemExit(f"{name} is not pure Python here; download its wheel for the GPU machine instead")
    base = Path(str(dist.locate_file("")))
    project = normalise(dist.metadata["Name"])
    target = folder / f"{project}-{dist.version}-py3-none-any.whl"
    dist_info = f"{project}-{dist.version}.dist-info"
    records = []
    tmp = target.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in sorted(dist.files or [], key=str):
            parts = Path(str(file)).parts
            # Scripts outside site-packages, bytecode and the installer's own notes do not travel.
            if parts[0] == ".." or "__pycache__" in parts or file.name in ("RECORD", "INSTALLER", "REQUESTED"):
                continue
            if file.name == "direct_url.json":
                continue
            data = (base / file).read_bytes()
            arcname = "/".join((dist_info, *parts[1:])) if parts[0].endswith(".dist-info") else "/".join(parts)
            wheel.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{arcname},sha256={digest},{len(data)}")
        records.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    os.replace(tmp, target)
    return target


def build_wheels(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):  # one version of each: two stop pip's install
        if normalise(old.name.split("-")[0]) in {normalise(n) for n in BUNDLED}:
            old.unlink()
    return [repack_wheel(name, folder) for name in BUNDLED]


# --------------------------------------------------------------------------- sizes


def travelling_tree() -> list[Path]:
    """The files the device tool sends: tracked, and untracked but not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def sizes(wheels: list[Path]) -> dict[str, int]:
    tree = sum(path.stat().st_size for path in travelling_tree())
    carried = sum(path.stat().st_size for path in wheels)
    return {"tree": tree, "wheels": carried, "total": tree + carried, "limit": LIMIT_BYTES}


# --------------------------------------------------------------------------- runs


_AUDIT = """
import json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
import diffusers
modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
with open(__AUDIT_OUT__, "w") as handle:
    json.dump({"modules": modules, "diffusers": diffusers.__file__}, handle)
"""


def run_audited(python_args: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    """Run scale.py's proof form under ``python_args``; return the modules it had imported by the end."""
    audit = out / "audit.json"
    code = _AUDIT.replace("__AUDIT_OUT__", repr(str(audit)))
    command = [sys.executable, *python_args, "-c", code, str(SCALE), "--", *PROOF_ARGS, "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"scale.py failed ({out.name}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(audit.read_text())
    result["table"] = (out / "scale.md").read_text()
    return result


def machine_distributions() -> list[importlib.metadata.Distribution]:
    """``ON_THE_MACHINE``'s distributions as installed here, with what they require (their versions here may
    need packages the machine's versions do not, and the machine has each installed with its own needs)."""
    installed = {normalise(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    todo, seen = [normalise(name) for name in ON_THE_MACHINE], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        for requirement in installed[name].requires or []:
            if "extra ==" not in requirement:
                todo.append(normalise(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]))
    return [installed[name] for name in sorted(seen)]


def machine_site(folder: Path) -> Path:
    """A site folder holding only ``ON_THE_MACHINE``'s packages from this environment (links), as on the GPU."""
    site = folder / "machine-site"
    site.mkdir()
    for dist in machine_distributions():
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(file)).parts[0] for file in dist.files or [] if Path(str(file)).parts[0] != ".."}
        for top in tops:
            source, link = base / top, site / top
            if source.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(source)
    return site


def bare_run(wheels: list[Path], folder: Path) -> dict[str, Any]:
    """scale.py as the GPU machine runs it: the wheels installed with pip --target, the machine's packages, no site."""
    target = folder / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*install, "--target", str(target), *map(str, wheels)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{machine_site(folder)}", "KINEMA_HOME": str(folder)}
    env.pop("PYTHONHOME", None)
    out = folder / "bare"
    out.mkdir()
    result = run_audited(["-S"], env, out)  # -S: none of this environment's site-packages, only PYTHONPATH
    if not Path(result["diffusers"]).is_relative_to(target):
        raise SystemExit(f"diffusers came from {result['diffusers']}, not from the wheel")
    return result


def full_run(folder: Path) -> dict[str, Any]:
    out = folder / "full"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "KINEMA_HOME": str(folder)}
    return run_audited([], env, out)


def forbidden(modules: dict[str, Any]) -> list[str]:
    return sorted(name for name in modules if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))


def repo_files(modules: dict[str, Any]) -> list[str]:
    """The repository's own files the GPU form imported (what it needs from the working tree)."""
    found = {str(Path(path).resolve().relative_to(ROOT)) for path in modules.values() if path and _in_repo(path)}
    return sorted(found | {str(SCALE.relative_to(ROOT))})


def _in_repo(path: str) -> bool:
    if not Path(path).is_absolute():  # torch's _classes and _ops name themselves relatively
        return False
    resolved = Path(path).resolve()
    return resolved.is_relative_to(ROOT) and ".venv" not in resolved.relative_to(ROOT).parts


# --------------------------------------------------------------------------- main


def check(wheel_folder: Path, work: Path) -> dict[str, Any]:
    wheels = build_wheels(wheel_folder)
    full = full_run(work)
    bare = bare_run(wheels, work)
    report: dict[str, Any] = {
        "wheels": {path.name: path.stat().st_size for path in wheels},
        "sizes": sizes(wheels),
        "forbidden_imported": forbidden(full["modules"]),
        "forbidden_imported_bare": forbidden(bare["modules"]),
        "repo_files": repo_files(full["modules"]),
        "diffusers_from": bare["diffusers"],
        "bare_table": bare["table"],
        "command": GPU_COMMAND.format(
            wheels=wheel_folder.relative_to(ROOT) if wheel_folder.is_relative_to(ROOT) else wheel_folder, out="$OUT"
        ),
    }
    failures = []
    if report["sizes"]["total"] > LIMIT_BYTES:
        failures.append(f"{report['sizes']['total'] / 2**20:.1f} MiB would travel, over 64 MiB")
    if report["forbidden_imported"]:
        failures.append(f"the GPU form imports {', '.join(report['forbidden_imported'])}")
    report["failures"] = failures
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="where the wheels go (default: .whl)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kinema-scale-bundle-") as work:
        report = check(args.wheels.resolve(), Path(work))
    mib = {key: value / 2**20 for key, value in report["sizes"].items()}
    print(
        f"travels: {mib['tree']:.1f} MiB of working tree + {mib['wheels']:.1f} MiB of wheels"
        f" = {mib['total']:.1f} MiB (limit {mib['limit']:.0f} MiB)"
    )
    print(f"wheels: {', '.join(report['wheels'])}")
    print(f"repository files it imports: {', '.join(report['repo_files'])}")
    print(f"imported of {', '.join(FORBIDDEN)}: {', '.join(report['forbidden_imported']) or 'none'}")
    print(f"ran with only the machine's packages and the wheels (diffusers from {report['diffusers_from']})")
    print(f"the GPU command, from the repository root with {args.wheels.name} carried:\n  {report['command']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    for failure in report["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
