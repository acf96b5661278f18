"""The command lines of the Hugging Face example scripts' READMEs run as they are, with only the
model and the data replaced by local tiny ones (transformers/examples/pytorch:
image-classification/README.md, text-classification/README.md)."""

import pytest
import yaml
from test_recipes import SENTIMENT_LABELS, run_recipe
from transformers import pipeline

from hftl.errors import ConfigError
from hftl.testing import (
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    write_toy_image_folder,
    write_toy_reviews_csv,
)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-examples")
    save_tiny_image_checkpoint(root / "vit", "vit", num_labels=2)
    write_toy_image_folder(root / "images", per_class=10, seed=0)
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 64, labels=SENTIMENT_LABELS, seed=0)
    write_toy_reviews_csv(root / "validation.csv", 32, labels=SENTIMENT_LABELS, seed=1)
    return root


def test_run_image_classification_readme_command(local, tmp_path, hftl_logs):
    # README: the beans command, with --dataset_name beans -> --train_dir (its "your own data"
    # form) and the Hub push left out; --label_column_name labels is beans' column name.
    out = tmp_path / "beans_outputs"
    report, trainer = run_recipe("image_classification", [
        "--model_name_or_path", str(local / "vit"), "--train_dir", str(local / "images"),
        "--output_dir", str(out), "--remove_unused_columns", "False",
        "--do_train", "--do_eval", "--learning_rate", "2e-5", "--num_train_epochs", "5",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
        "--logging_strategy", "steps", "--logging_steps", "10", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--load_best_model_at_end", "True",
        "--save_total_limit", "3", "--seed", "1337",
    ])  # fmt: skip
    evaluations = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert len(evaluations) == 5 and trainer.state.best_model_checkpoint  # one per epoch, best kept
    assert len(list(out.glob("checkpoint-*"))) <= 3
    # no validation folder: hftl holds out --validation_split_percentage (10%), stratified
    assert (
        report["labels"] == ["blue", "green", "red"]
        and 0 < sum(s["support"] for s in report["per_class"].values()) < 30
    )
    labels = {p["label"] for p in pipeline("image-classification", model=str(out))(
        str(next((local / "images" / "red").iterdir())))}  # fmt: skip
    assert labels == {"blue", "green", "red"}


def test_run_classification_readme_command(local, tmp_path, hftl_logs):
    # README: ag_news -> local CSV files; --text_column_name is argparse's abbreviation of
    # run_classification.py's --text_column_names, and hftl's own flag.
    out = tmp_path / "ag_news"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"),
        "--train_file", str(local / "train.csv"), "--validation_file", str(local / "validation.csv"),
        "--shuffle_train_dataset", "--metric_name", "accuracy", "--text_column_name", "text",
        "--text_column_delimiter", "\n", "--label_column_name", "label", "--do_train", "--do_eval",
        "--max_seq_length", "512", "--per_device_train_batch_size", "32", "--learning_rate", "2e-5",
        "--num_train_epochs", "1", "--output_dir", str(out),
    ])  # fmt: skip
    said = [r.getMessage() for r in hftl_logs.records]
    assert any(m.startswith("--shuffle_train_dataset has no effect") for m in said)
    assert any(m.startswith("--text_column_delimiter has no effect") for m in said)
    assert trainer.state.global_step == 2  # 64 reviews, batch 32, one epoch
    assert sorted(report["labels"]) == sorted(SENTIMENT_LABELS)
    results = pipeline("text-classification", model=str(out))(["a fine film"])
    assert results[0]["label"] in SENTIMENT_LABELS


def test_run_glue_readme_command_with_its_own_files(local, tmp_path):
    # README: --task_name $TASK_NAME; its own-data form is --train_file / --validation_file.
    out = tmp_path / "glue"
    _, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--train_file", str(local / "train.csv"),
        "--validation_file", str(local / "validation.csv"), "--do_train", "--do_eval",
        "--max_seq_length", "128", "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5", "--num_train_epochs", "3", "--output_dir", str(out),
    ])  # fmt: skip
    assert trainer.state.global_step == 6
    assert (out / "model.safetensors").exists()


def test_example_flags_map_onto_hftl_or_say_why_not(local, tmp_path, hftl_logs):
    from hftl.run import parse_run_config

    base = ["--model_name_or_path", str(local / "bert"), "--train_file", str(local / "train.csv"),
            "--output_dir", str(tmp_path / "o")]  # fmt: skip
    model, data, text, training = parse_run_config("text-classification", [
        *base, "--model_revision", "v2", "--tokenizer_name", str(local / "bert"),
        "--train_val_split", "0.25", "--text_column_names", "review", "--do_predict",
    ], prog="run_classification.py")  # fmt: skip
    assert (model.revision, model.processor_name) == ("v2", str(local / "bert"))
    assert data.validation_split_percentage == 25.0 and text.text_column_name == "review"
    assert any("no test-set prediction" in r.getMessage() for r in hftl_logs.records)
    refused = {
        ("--task_name", "sst2"): "--dataset_name nyu-mll/glue --dataset_config_name sst2",
        ("--text_column_names", "title,body"): "hftl reads one text column",
        ("--metric_name", "matthews_correlation"): "hftl reports accuracy",
        ("--do_regression",): "regression is not supported",
        ("--model_revision", "v2", "--revision", "v3"): "give one of them",
    }
    for flags, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            parse_run_config("text-classification", [*base, *flags], prog="run_glue.py")


def test_run_config_records_the_mapped_values(local, tmp_path):
    out = tmp_path / "o"
    run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--train_file", str(local / "train.csv"),
        "--train_val_split", "0.25", "--max_steps", "1", "--output_dir", str(out),
        "--report_to", "none",
    ])  # fmt: skip
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["validation_split_percentage"] == 25.0
    assert "train_val_split" not in config
