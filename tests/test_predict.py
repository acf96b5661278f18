"""After training: ``--do_predict`` (a run's test split, predicted by the final model) and
``hftl predict`` (new data, one row per input, in input order), on tiny models of every task."""

import csv
import json
import shutil

import numpy as np
import pytest
from test_label_shapes import write_csv
from test_recipes import QUIET, run_recipe
from transformers import pipeline

from hftl.cli import main
from hftl.errors import ConfigError
from hftl.testing import (
    save_tiny_audio_checkpoint,
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    toy_reviews,
    write_toy_audio_folder,
    write_toy_image_folder,
    write_toy_reviews_csv,
)


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def pipeline_scores(task, model, inputs, names):
    results = pipeline(task, model=str(model), top_k=None)(inputs)
    return np.array([[{r["label"]: r["score"] for r in row}[n] for n in names] for row in results])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A feature_extraction run (the cached path) with a flat --test_dir: predicted, unscored."""
    root = tmp_path_factory.mktemp("predict-images")
    save_tiny_image_checkpoint(root / "vit", "vit", num_labels=2)
    write_toy_image_folder(root / "train", per_class=8, seed=0)
    write_toy_image_folder(root / "sorted", per_class=3, seed=1)
    flat = root / "flat"
    flat.mkdir()
    for path in sorted((root / "sorted").rglob("*.*")):
        shutil.copy(path, flat / f"{path.parent.name}-{path.name}")
    out = root / "out"
    run_recipe("image_classification", [
        "--model_name_or_path", str(root / "vit"), "--train_dir", str(root / "train"),
        "--output_dir", str(out), "--strategy", "feature_extraction", "--max_steps", "4",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--test_dir", str(flat),
        *QUIET,
    ])  # fmt: skip
    return root, out


def test_do_predict_on_a_flat_folder_predicts_every_image_with_the_saved_model(image_run):
    root, out = image_run
    rows = jsonl(out / "predictions.jsonl")
    files = sorted(str(p) for p in (root / "flat").iterdir())
    assert sorted(r["input"] for r in rows) == files and [r["index"] for r in rows] == list(
        range(len(files))
    )
    names = ["blue", "green", "red"]
    scores = pipeline_scores("image-classification", out, [r["input"] for r in rows], names)
    assert np.allclose([[r["scores"][n] for n in names] for r in rows], scores, atol=1e-5)
    assert [r["label"] for r in rows] == [names[i] for i in scores.argmax(1)]
    assert not (out / "predict_results.json").exists()  # no labels: nothing scored
    info = json.loads((out / "run_info.json").read_text())
    assert info["test"] == {"rows": len(files), "labelled": False}
    assert "without labels" in (out / "README.md").read_text()


def test_hftl_predict_writes_a_row_per_input_in_order_and_goes_on_past_a_broken_one(
    image_run, tmp_path, capsys
):
    root, out = image_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    files = sorted(str(p) for p in (root / "flat").iterdir())
    output = tmp_path / "predicted.csv"
    code = main(["predict", str(out), files[0], str(broken), str(root / "flat"),
                 "--output", str(output), "--batch_size", "4"])  # fmt: skip
    assert code == 1  # an input could not be read
    said = capsys.readouterr().out
    assert f"row 1: image {broken} cannot be decoded" in said and "rows/s" in said
    with open(output) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["input"] for r in rows] == [files[0], str(broken), *files]
    assert rows[1]["prediction"] == "" and not (tmp_path / "predicted.csv.partial").exists()
    trained = {r["input"]: r for r in jsonl(out / "predictions.jsonl")}
    for row in rows[2:]:  # what --do_predict predicted, from the saved model alone
        assert row["prediction"] == trained[row["input"]]["label"]
        assert float(row["red"]) == pytest.approx(trained[row["input"]]["scores"]["red"], abs=1e-5)
    strict = ["predict", str(out), str(broken), "--output", str(tmp_path / "s.jsonl"), "--strict"]
    assert main(strict) == 2 and "cannot be decoded" in capsys.readouterr().err  # stops at it
    assert not (tmp_path / "s.jsonl").exists()
    assert main(["predict", str(out), files[0], "--output", str(output)]) == 2
    assert "exists; give a new path or --overwrite" in capsys.readouterr().err


def test_audio_class_folders_are_predicted_and_scored(tmp_path):
    save_tiny_audio_checkpoint(tmp_path / "w2v", "wav2vec2", num_labels=2)
    write_toy_audio_folder(tmp_path / "train", per_class=6, seed=0)
    write_toy_audio_folder(tmp_path / "test", per_class=2, seed=2)
    out = tmp_path / "out"
    run_recipe("audio_classification", [
        "--model_name_or_path", str(tmp_path / "w2v"), "--train_dir", str(tmp_path / "train"),
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "6",
        "--do_predict", "--test_dir", str(tmp_path / "test"), "--max_length_seconds", "1",
        "--validation_split_percentage", "25",
        *QUIET,
    ])  # fmt: skip
    rows = jsonl(out / "predictions.jsonl")
    report = json.loads((out / "predict_report.json").read_text())
    assert sum(c["support"] for c in report["per_class"].values()) == 6 == len(rows)
    folder = {r["input"].split("/")[-2] for r in rows}
    assert folder == {"low", "mid", "high"}
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_accuracy"] == pytest.approx(report["accuracy"])
    correct = np.mean([r["label"] == r["input"].split("/")[-2] for r in rows])
    assert report["accuracy"] == pytest.approx(correct)
    predicted = tmp_path / "again.jsonl"
    assert main(["predict", str(out), str(tmp_path / "test"), "--output", str(predicted)]) == 0
    again = {r["input"]: r for r in jsonl(predicted)}
    for row in rows:  # whole clips, the saved feature extractor: what the run predicted
        assert again[row["input"]]["label"] == row["label"]
        assert again[row["input"]]["score"] == pytest.approx(row["score"], abs=1e-4)


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-text")
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 60, labels=("negative", "positive"), seed=0)
    write_toy_reviews_csv(root / "test.csv", 9, labels=("negative", "positive"), seed=3)
    return root


def test_a_bad_test_split_stops_the_run_before_training(text_files, tmp_path):
    argv = ["--model_name_or_path", str(text_files / "bert"), "--train_file",
            str(text_files / "train.csv"), "--output_dir", str(tmp_path / "out"), *QUIET]  # fmt: skip
    other = write_toy_reviews_csv(tmp_path / "other.csv", 9, labels=("negative", "neutral"), seed=1)
    cases = {
        str(other): "the test split has labels the training data does not \\(neutral\\)",
        str(write_csv(tmp_path / "notext.csv", [{"review": "good", "label": "positive"}])):
            "--test_file .*notext.csv: no column text",
    }  # fmt: skip
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            run_recipe("sentiment", [*argv, "--test_file", path])
        assert not (tmp_path / "out" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="--do_predict: nothing to predict"):
        run_recipe("sentiment", [*argv, "--do_predict"])


def test_hftl_predict_reads_text_lines_and_data_files_with_the_runs_preprocessing(
    text_files, tmp_path, capsys
):
    out = tmp_path / "out"
    run_recipe("sentiment", [
        "--model_name_or_path", str(text_files / "bert"), "--train_file",
        str(text_files / "train.csv"), "--output_dir", str(out), "--max_steps", "3",
        "--max_seq_length", "6", "--test_file", str(text_files / "test.csv"), *QUIET,
    ])  # fmt: skip
    texts = [r["text"] for r in toy_reviews(9, seed=3)]
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts[:4]) + "\n")
    predicted = tmp_path / "p.jsonl"
    code = main(["predict", str(out), str(lines), str(text_files / "test.csv"),
                 "--output", str(predicted), "--batch_size", "3"])  # fmt: skip
    assert code == 0
    rows = jsonl(predicted)
    assert [r["input"] for r in rows] == texts[:4] + texts
    trained = jsonl(out / "predictions.jsonl")  # --do_predict's, in the test file's order
    assert [r["label"] for r in rows[4:]] == [r["label"] for r in trained]
    assert np.allclose([r["score"] for r in rows[4:]], [r["score"] for r in trained], atol=1e-5)
    # max_seq_length 6 from the run's run_config.yaml: the long texts are cut as in training
    plain = pipeline_scores("text-classification", out, texts, ["negative", "positive"])
    long = [i for i, t in enumerate(texts) if len(t.split()) > 4]
    assert long and not np.allclose(
        [[rows[4 + i]["scores"][n] for n in ("negative", "positive")] for i in long],
        plain[long], atol=1e-6,
    )  # fmt: skip
    code = main(["predict", str(out), str(text_files / "test.csv"), "--input_column", "words",
                 "--output", str(tmp_path / "x.jsonl")])  # fmt: skip
    assert (
        code == 2
        and "--input_column words is not a column; the columns are: text, label"
        in capsys.readouterr().err
    )
