"""What `pip install hftl` gives a user, checked: the sdist and wheel built from this tree, the
wheel installed (not editable) into a fresh virtual environment, and a smoke test run there from a
directory outside the checkout.

    python scripts/check_wheel.py            # about 3 minutes on 2 CPU cores, most of it pip
    python scripts/check_wheel.py --keep DIR # keep the venv, dist/ and the runs in DIR

1. ``python -m build``: the sdist, then the wheel built from the sdist (so the sdist holds what a
   build needs);
2. the wheel holds every module of ``hftl/`` in this tree, the card templates and the recipes'
   YAML configs (a missing one is named);
3. a fresh venv, ``pip install <wheel>`` with its dependencies;
4. from an empty directory, with that venv's Python (``scripts/wheel_smoke.py``): every module
   imports from the venv, ``hftl --help`` and ``python -m hftl train --help`` work, the README's
   configs resolve, and ``hftl train TASK`` trains a tiny model for every task, which plain
   ``transformers.pipeline()`` then loads and runs.

CI runs it after the test suite (``.ci/run``, the README's test command).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def modules_in_tree() -> list[str]:
    """Every module of the hftl package in this tree (``hftl.tasks.audio``, ...)."""
    names = []
    for path in sorted((ROOT / "hftl").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def expected_files() -> set[str]:
    """Every module of hftl/, and the package data pyproject.toml maps into hftl (the card
    templates, the recipes' configs) as the wheel places them."""
    files = {path.relative_to(ROOT).as_posix() for path in (ROOT / "hftl").rglob("*.py")}
    for package, folder in SETUPTOOLS["package-dir"].items():
        inside = package.replace(".", "/")
        for pattern in SETUPTOOLS["package-data"][package]:
            files |= {f"{inside}/{p.name}" for p in (ROOT / folder).glob(pattern)}
    return files


def run(command: list, **kwargs) -> None:
    print("$", " ".join(map(str, command)), flush=True)
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def build(dist: Path) -> Path:
    run([sys.executable, "-m", "build", "--quiet", "--outdir", dist, ROOT])
    (wheel,) = dist.glob("hftl-*.whl")
    (sdist,) = dist.glob("hftl-*.tar.gz")
    print(f"built {sdist.name} and {wheel.name}")
    return wheel


def check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
    missing = sorted(expected_files() - inside)
    if missing:
        raise SystemExit(
            f"{wheel.name} lacks {len(missing)} files of the tree: {', '.join(missing)}"
        )
    print(f"{wheel.name}: every module, template and config of the tree ({len(inside)} files)")


def install(wheel: Path, env: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    started = time.perf_counter()
    run([python, "-m", "pip", "install", "--quiet", wheel])
    print(f"installed {wheel.name} and its dependencies in {time.perf_counter() - started:.0f} s")
    return python


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="hftl-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    modules = modules_in_tree()  # what is built now (the tree may change while pip works)
    try:
        dist = work / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        wheel = build(dist)
        check_contents(wheel)
        python = install(wheel, work / "venv")
        outside = work / "outside"  # not the checkout: nothing of it can be imported from here
        shutil.rmtree(outside, ignore_errors=True)
        outside.mkdir()
        smoke = shutil.copy(ROOT / "scripts" / "wheel_smoke.py", outside / "wheel_smoke.py")
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        environment["PATH"] = f"{python.parent}{os.pathsep}{environment.get('PATH', '')}"
        run([python, smoke, *modules], cwd=outside, env=environment)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("wheel check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
