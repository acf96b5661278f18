"""What a run prints: hftl's own lines and the bars of real work; the detail in train.log."""

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForImageClassification

from hftl.errors import ConfigError
from hftl.models import describe_loading
from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_load_report_in_one_line_and_missing_backbone_weights_refused(tmp_path):
    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)
    model, loading = AutoModelForImageClassification.from_pretrained(
        tmp_path / "vit", num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert describe_loading(model, loading, "vit") == (
        "new 3-class head (classifier); the checkpoint's 2-class head dropped"
    )
    lost = {**loading, "missing_keys": {"vit.encoder.layer.0.output.dense.weight"}}
    with pytest.raises(ConfigError, match="1 weights of the model are not in the checkpoint"):
        describe_loading(model, lost, "vit")


def test_ignore_mismatched_sizes_false_refuses_another_head_size(tmp_path):
    from test_recipes import run_recipe

    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)
    write_toy_image_folder(tmp_path / "images", per_class=12, seed=0)
    argv = ["--model_name_or_path", str(tmp_path / "vit"), "--train_dir", str(tmp_path / "images"),
            "--output_dir", str(tmp_path / "o"), "--ignore_mismatched_sizes", "false",
            "--max_steps", "1", "--report_to", "none"]  # fmt: skip
    with pytest.raises(ConfigError, match="--ignore_mismatched_sizes is false; set it to true"):
        run_recipe("image_classification", argv)


def test_screen_has_hftls_lines_and_train_log_the_detail(tmp_path):
    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)
    write_toy_image_folder(tmp_path / "images", per_class=12, seed=0)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(RECIPES / "image_classification.py"),
         "--model_name_or_path", str(tmp_path / "vit"), "--train_dir", str(tmp_path / "images"),
         "--output_dir", str(out), "--strategy", "full", "--num_train_epochs", "2",
         "--logging_steps", "1", "--eval_strategy", "epoch", "--report_to", "none"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    screen = result.stdout + result.stderr
    assert "[hftl] new 3-class head (classifier); the checkpoint's 2-class head dropped" in screen
    assert "[hftl] epoch 1: " in screen and "accuracy" in screen  # one line per evaluation
    for noise in (
        "LOAD REPORT",
        "{'loss'",
        "Loading weights",
        "Writing model shards",
        "UserWarning",
    ):
        assert noise not in screen, noise
    log = (out / "train.log").read_text()
    assert "LOAD REPORT" in log and "hftl.progress: step 1: {'loss'" in log
