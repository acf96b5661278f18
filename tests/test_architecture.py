"""The structure the docs promise: the import layers of docs/architecture.md and no import cycle
(import-linter's contracts in pyproject.toml), the package list that the wheel is built from, and
no test fixture in the library."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter with this repository's contracts, on the hftl package under
    ``package_parent``."""
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # a cycle hidden in a function: the lowest layer importing the command line
        ("storage.py", "def _later():\n    from hftl.cli import main\n", "acyclic"),
        # a task reaching for the test fixtures (the top layer: nothing may import it)
        ("tasks/base.py", "def _tiny():\n    from hftl.testing import TINY_MODELS\n", "layers"),
    ],
)
def test_the_contracts_catch_a_new_cycle_and_a_fixture_in_the_library(tmp_path, module, line,
                                                                        broken):  # fmt: skip
    copy = tmp_path / "hftl"
    shutil.copytree(ROOT / "hftl", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / module, "a") as handle:
        handle.write("\n\n" + line)
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    contracts = {"acyclic": "no import cycles", "layers": "hftl's layers"}
    assert f"{contracts[broken]}" in result.stdout and "BROKEN" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_every_package_of_the_tree_is_in_the_wheels_list():
    """pyproject.toml lists the packages by hand (three of them live outside hftl/): every
    package directory under hftl/ must be on the list, and every mapped folder must exist."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    mapped = setuptools["package-dir"]
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "hftl").rglob("__init__.py")
    }
    assert on_disk | set(mapped) == listed
    for package, folder in mapped.items():
        assert any((ROOT / folder).glob(setuptools["package-data"][package][0])), package


def test_the_task_interface_has_no_test_fixtures():
    """The tiny models, their inputs and toy data are hftl.testing's (a leaf), not the Task's."""
    from hftl.tasks import TASKS
    from hftl.testing import TINY_TASKS

    fixture_names = {"dummy_batch", "toy_dataset", "tiny_kinds"}
    for task in TASKS:
        assert not fixture_names & set(dir(task)), task.name
    assert set(TINY_TASKS.values()) == set(TASKS.names())
