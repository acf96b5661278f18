"""After training: ``--do_predict`` (a run's test split, predicted by the final model),
``hftl predict`` (new data, one row per input, in input order) and ``hftl export`` (ONNX, checked
against PyTorch), on tiny models of every task."""

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


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """A wav2vec2 run with class folders as --test_dir: predicted and scored."""
    root = tmp_path_factory.mktemp("predict-audio")
    save_tiny_audio_checkpoint(root / "w2v", "wav2vec2", num_labels=2)
    write_toy_audio_folder(root / "train", per_class=6, seed=0)
    write_toy_audio_folder(root / "test", per_class=2, seed=2)
    out = root / "out"
    run_recipe("audio_classification", [
        "--model_name_or_path", str(root / "w2v"), "--train_dir", str(root / "train"),
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "6",
        "--do_predict", "--test_dir", str(root / "test"), "--max_length_seconds", "1",
        "--validation_split_percentage", "25", *QUIET,
    ])  # fmt: skip
    return root, out


def test_audio_class_folders_are_predicted_and_scored(audio_run, tmp_path):
    root, out = audio_run
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
    assert main(["predict", str(out), str(root / "test"), "--output", str(predicted)]) == 0
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


@pytest.fixture(scope="module")
def text_run(text_files):
    """hftl's mean-pooled head on the tiny BERT, texts cut at 6 tokens, a labelled --test_file."""
    out = text_files / "out"
    run_recipe("sentiment", [
        "--model_name_or_path", str(text_files / "bert"), "--train_file",
        str(text_files / "train.csv"), "--output_dir", str(out), "--max_steps", "3",
        "--max_seq_length", "6", "--pooling", "mean", "--test_file", str(text_files / "test.csv"),
        *QUIET,
    ])  # fmt: skip
    return out


def test_hftl_predict_reads_text_lines_and_data_files_with_the_runs_preprocessing(
    text_files, text_run, tmp_path, capsys
):
    out = text_run
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


ORT_ONLY = """
import sys, numpy, onnxruntime
data = numpy.load(sys.argv[2])
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
names = [i.name for i in session.get_inputs()]
logits = session.run(["logits"], {n: data[n] for n in names})[0]
assert "torch" not in sys.modules and "transformers" not in sys.modules
print(float(numpy.abs(logits - data["expected_logits"]).max()))
"""


@pytest.mark.parametrize("which", ["image_run", "audio_run", "text_run"])
def test_export_loads_with_onnxruntime_alone_and_matches_pytorch(which, request, tmp_path):
    import subprocess
    import sys

    from hftl.hub import _files_to_push
    from hftl.inference import Predictor

    run = request.getfixturevalue(which)
    out = run[1] if isinstance(run, tuple) else run
    assert main(["export", str(out), "--quantize", "dynamic-int8"]) == 0
    record = json.loads((out / "run_info.json").read_text())["export"]
    assert record["fp32"]["max_abs_difference"] <= 1e-4
    assert record["fp32"]["label_agreement"] == 1.0 and record["int8"]["label_agreement"] >= 0.99
    assert {p.name for p in (out / "onnx").iterdir()} >= {"model.onnx", "model_quantized.onnx",
                                                          "config.json"}  # fmt: skip
    assert "### ONNX" in (out / "README.md").read_text()
    pushed = {p.relative_to(out).as_posix() for p in _files_to_push(out)}
    assert {"onnx/model.onnx", "onnx/model_quantized.onnx"} <= pushed  # hftl push uploads them
    # another batch than the export's example (other size, other lengths), in a fresh
    # interpreter with onnxruntime and numpy only
    predictor = Predictor(str(out), device="cpu")
    rows = jsonl(out / "predictions.jsonl")
    values = [r["input"] if "text" in which else {"path": r["input"], "bytes": None}
              for r in rows[:5]]  # fmt: skip
    inputs = predictor.batch(values)
    arrays = {k: v.numpy() for k, v in inputs.items()}
    np.savez(tmp_path / "inputs.npz", expected_logits=predictor.logits(values), **arrays)
    done = subprocess.run([sys.executable, "-c", ORT_ONLY, str(out / "onnx" / "model.onnx"),
                           str(tmp_path / "inputs.npz")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) <= 1e-4
    # hftl predict --backend onnxruntime: the labels PyTorch predicted
    predicted = tmp_path / "onnx.jsonl"
    sources = [r["input"] for r in rows]
    if "text" in which:
        (tmp_path / "t.txt").write_text("\n".join(sources) + "\n")
        sources = [str(tmp_path / "t.txt")]
    assert main(["predict", str(out), *sources, "--backend", "onnxruntime",
                 "--output", str(predicted)]) == 0  # fmt: skip
    assert [r["label"] for r in jsonl(predicted)] == [r["label"] for r in rows]
