"""Label shapes (hftl/shapes/): several labels per example and numbers, read from the data,
trained with the shape's loss, reported with its metrics, saved so that plain ``pipeline()``
gives what hftl computed; class weights and tuned thresholds."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_recipes import run_recipe
from transformers import pipeline

from hftl.errors import ConfigError
from hftl.shapes import SHAPES, LabelArguments, tune_thresholds
from hftl.testing import save_tiny_text_checkpoint, toy_reviews

QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
         "--per_device_train_batch_size", "16", "--learning_rate", "5e-3"]  # fmt: skip


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_text_checkpoint(tmp_path_factory.mktemp("shapes") / "bert", "bert")


def tagged_reviews(n, seed):
    """Reviews with their sentiment and, for long ones, 'long' too (some rows: no tag)."""
    rows = []
    for i, r in enumerate(toy_reviews(n, seed=seed)):
        tags = [r["label"]] if i % 5 else []
        if len(r["text"].split()) > 8:
            tags.append("long")
        rows.append({"text": r["text"], "topics": tags})
    return rows


def rated_reviews(n, seed, mean=50.0):
    rng = np.random.default_rng(seed)
    return [{"text": r["text"], "rating": mean + (8.0 if r["label"] == "positive" else -8.0)
             + float(rng.normal(0, 1))} for r in toy_reviews(n, seed=seed)]  # fmt: skip


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def hftl_outputs(trainer, texts):
    """hftl's own predictions for ``texts``: the trained model's outputs read by the run's
    label shape (probabilities, or values in the data's units)."""
    tokenizer = trainer.processing_class
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    return trainer.label_spec.outputs(logits.numpy())


def pipeline_outputs(out, texts, names):
    results = pipeline("text-classification", model=str(out), top_k=None)(texts)
    return np.array([[{r["label"]: r["score"] for r in row}[n] for n in names] for row in results])


def test_multi_label_from_a_list_column_trains_saves_and_loads_with_its_thresholds(bert, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", tagged_reviews(80, 0))
    valid = write_jsonl(tmp_path / "valid.jsonl", tagged_reviews(40, 1))
    test = write_jsonl(tmp_path / "test.jsonl", tagged_reviews(12, 4))
    out = tmp_path / "out"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(bert), "--train_file", str(train), "--validation_file",
        str(valid), "--output_dir", str(out), "--num_train_epochs", "4", "--eval_strategy",
        "epoch", "--class_weights", "auto", "--test_file", str(test), *QUIET,
    ])  # fmt: skip
    names = ["long", "negative", "positive"]
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(3)] == names
    assert set(config["label_thresholds"]) == set(names)
    # the report: F1 at the tuned thresholds and at 0.5, per label
    assert report["at_0.5"]["f1"] <= report["f1"] + 1e-9  # tuned on this split: never worse
    assert set(report["per_label"]) == set(names) and "mean_average_precision" in report
    info = json.loads((out / "run_info.json").read_text())["label_shape"]
    positives = {n: sum(n in r["topics"] for r in tagged_reviews(80, 0)) for n in names}
    assert info["train_counts"] == positives
    expected = {n: round((80 - positives[n]) / positives[n], 6) for n in names}
    assert info["class_weights"]["weights"] == pytest.approx(expected)
    texts = [r["text"] for r in tagged_reviews(6, 3)]
    ours = hftl_outputs(trainer, texts)
    assert np.allclose(pipeline_outputs(out, texts, names), ours, atol=1e-5)  # sigmoid per label
    # --do_predict (a --test_file turns it on): the saved model's scores, its tuned thresholds
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in tagged_reviews(12, 4)]
    scores = pipeline_outputs(out, texts, names)
    assert [r["input"] for r in rows] == texts
    assert np.allclose([[r["scores"][n] for n in names] for r in rows], scores, atol=1e-5)
    cut = [config["label_thresholds"][n] for n in names]
    assert [r["labels"] for r in rows] == [
        [n for n, p, t in zip(names, row, cut, strict=True) if p >= t] for row in scores
    ]
    lines = (out / "predict_results.txt").read_text().splitlines()
    assert lines[0] == "index\tprediction" and lines[1] == f"0\t{rows[0]['labels']}"
    tested = json.loads((out / "predict_report.json").read_text())
    assert sum(s["support"] for s in tested["per_label"].values()) == sum(
        len(r["topics"]) for r in tagged_reviews(12, 4)
    )
    card = (out / "README.md").read_text()
    assert "at the tuned thresholds" in card and "| `long` |" in card
    assert "| class weights (pos_weight = negatives / positives per label) |" in card
    assert not (out / "confusion_matrix.json").exists()


def test_regression_predicts_in_the_datas_units_after_training_on_standardised_targets(
    bert, tmp_path
):
    train = write_csv(tmp_path / "train.csv", rated_reviews(96, 0))
    test = write_csv(tmp_path / "test.csv", [{"text": r["text"]} for r in toy_reviews(8, seed=5)])
    out = tmp_path / "out"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(bert), "--train_file", str(train), "--output_dir", str(out),
        "--num_train_epochs", "6", "--metric_for_best_model", "accuracy", *QUIET,
        "--do_predict", "--test_file", str(test),
    ])  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "rating"}
    assert trainer.args.metric_for_best_model == "rmse" and trainer.args.greater_is_better is False
    targets = [r["rating"] for r in rated_reviews(96, 0)]
    record = json.loads((out / "run_info.json").read_text())["label_shape"]["targets"]["rating"]
    assert record["mean"] == pytest.approx(np.mean(targets[: len(targets)]), abs=2.0)
    texts = [r["text"] for r in toy_reviews(8, seed=5)]
    ours = hftl_outputs(trainer, texts)
    assert np.allclose(pipeline_outputs(out, texts, ["rating"]), ours, atol=1e-4)
    assert 35 < ours.mean() < 65  # the data's units, not standardised ones
    # --do_predict on a test file without targets: the values in the data's units, unscored
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert np.allclose([r["value"] for r in rows], ours[:, 0], atol=1e-4)
    lines = (out / "predict_results.txt").read_text().splitlines()
    assert lines[1] == f"0\t{ours[0, 0]:3.3f}" and len(lines) == 9
    assert not (out / "predict_results.json").exists()  # no targets, no scores
    assert report["pearson"] > 0.5  # it learned the sentiment in the number
    card = (out / "README.md").read_text()
    assert (out / "predicted_vs_true.png").exists() and "R²" in card
    assert f"`rating`: mean {record['mean']:.4g}" in card


def test_one_zero_one_columns_are_multi_label_and_two_numeric_columns_two_targets(bert, tmp_path):
    rows = [{"text": r["text"], "good": int(r["label"] == "positive"), "bad": int(r["label"] == "negative"),
             "x": float(i % 7), "y": float(i % 3) * 2.5} for i, r in enumerate(toy_reviews(60, seed=0))]  # fmt: skip
    path = write_csv(tmp_path / "data.csv", rows)
    flags = [
        "--model_name_or_path",
        str(bert),
        "--train_file",
        str(path),
        "--max_steps",
        "2",
        *QUIET,
    ]
    _, trainer = run_recipe("sentiment", [*flags, "--output_dir", str(tmp_path / "a"),
                                          "--label_column_name", "good,bad"])  # fmt: skip
    assert trainer.label_spec.shape is SHAPES.get("multi_label")
    assert trainer.label_spec.names == ["good", "bad"]
    report, trainer = run_recipe("sentiment", [*flags, "--output_dir", str(tmp_path / "b"),
                                               "--label_column_name", "x,y"])  # fmt: skip
    assert trainer.label_spec.shape is SHAPES.get("regression")
    assert set(report["per_target"]) == {"x", "y"}
    assert trainer.model.config.num_labels == 2


@pytest.mark.parametrize(
    "rows,flags,match",
    [
        ([{"text": "a", "rating": 1.5}, {"text": "b", "rating": float("nan")}] * 10, [],
         r"split 'train': data row 2 has a target nan \(not a finite number\)"),
        ([{"text": "a", "topics": ["x"]}, {"text": "b", "topics": []}] * 10,
         ["--problem_type", "single_label_classification"],
         r"data row 2 has 0 labels in 'topics', but --problem_type single_label_classification"),
        ([{"text": "a", "rating": 1.5}, {"text": "b", "rating": 2.5}] * 10,
         ["--class_weights", "auto"], r"--class_weights auto: a regression run has no classes"),
        ([{"text": "a", "topics": ["x"]}, {"text": "b", "topics": ["y"]}] * 10,
         ["--class_weights", "x=2,z=1"], r"--class_weights: z not among the labels \(x, y\)"),
    ],
)  # fmt: skip
def test_bad_labels_are_one_line_naming_the_row_or_flag(bert, tmp_path, rows, flags, match):
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(ConfigError, match=match) as error:
        run_recipe("sentiment", ["--model_name_or_path", str(bert), "--train_file", str(path),
                                 "--output_dir", str(tmp_path / "o"), *QUIET, *flags])  # fmt: skip
    assert "\n" not in str(error.value)


def test_a_label_only_in_validation_is_named(bert, tmp_path):
    train = write_jsonl(
        tmp_path / "t.jsonl", [{"text": "a b", "topics": ["x"]}, {"text": "c", "topics": ["y"]}] * 8
    )
    valid = write_jsonl(tmp_path / "v.jsonl", [{"text": "a", "topics": ["x", "z"]}] * 3)
    argv = ["--model_name_or_path", str(bert), "--train_file", str(train), "--validation_file",
            str(valid), "--output_dir", str(tmp_path / "o"), *QUIET]  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"label 'z' \(3 validation rows\) never occurs in the training data"
    ):
        run_recipe("sentiment", argv)
    _, trainer = run_recipe("sentiment", [*argv, "--drop_unseen_validation_labels", "true",
                                          "--max_steps", "1"])  # fmt: skip
    assert trainer.label_spec.names == ["x", "y"]


def test_delimited_csv_labels_are_multi_label(bert, tmp_path):
    rows = [{"text": r["text"], "tags": ";".join(r["topics"])} for r in tagged_reviews(40, 0)]
    path = write_csv(tmp_path / "d.csv", rows)
    _, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(bert), "--train_file", str(path), "--label_delimiter", ";",
        "--output_dir", str(tmp_path / "o"), "--max_steps", "1", *QUIET,
    ])  # fmt: skip
    assert trainer.label_spec.names == ["long", "negative", "positive"]
    first = trainer.train_dataset[0]["labels"]
    assert len(first) == 3 and set(first) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------------------
# The pieces: losses, weights, thresholds, metrics
# ---------------------------------------------------------------------------------------------


def spec_for(shape, train_column, names, **flags):
    from datasets import Dataset

    return SHAPES.get(shape).spec(
        Dataset.from_dict({"y": train_column}), "y", names, LabelArguments(**flags)
    )


def test_class_weights_inverse_and_effective_and_their_loss():
    counts = [80, 20]
    spec = spec_for("single_label", [0] * 80 + [1] * 20, ["a", "b"], class_weights="inverse")
    assert spec.class_weights == pytest.approx([100 / 160, 100 / 40])  # N / (C n_c)
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 0, 1])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(spec.class_weights))
    assert spec.loss(logits, labels) == pytest.approx(float(expected))
    effective = spec_for(
        "single_label", [0] * 80 + [1] * 20, ["a", "b"], class_weights="effective:0.9"
    )
    raw = [(1 - 0.9) / (1 - 0.9**n) for n in counts]
    scale = 100 / sum(w * n for w, n in zip(raw, counts, strict=True))
    assert effective.class_weights == pytest.approx([w * scale for w in raw])
    given = spec_for("single_label", [0, 1] * 5, ["a", "b"], class_weights="b=3")
    assert given.class_weights == [1.0, 3.0]


def test_regression_loss_is_on_standardised_targets_and_huber_when_asked():
    spec = spec_for("regression", [[10.0], [20.0], [30.0]], ["t"])
    assert spec.mean == [20.0] and spec.std == pytest.approx([math.sqrt(200 / 3)])
    logits, labels = torch.tensor([[0.5], [-1.0]]), torch.tensor([[25.0], [10.0]])
    standardised = (labels - 20.0) / spec.std[0]
    assert spec.loss(logits, labels) == pytest.approx(float(F.mse_loss(logits, standardised)))
    huber = spec_for("regression", [[10.0], [20.0], [30.0]], ["t"], regression_loss="huber")
    assert huber.loss(logits, labels) == pytest.approx(float(F.huber_loss(logits, standardised)))


def test_thresholds_maximise_each_labels_f1():
    probabilities = np.array([[0.9, 0.3], [0.8, 0.25], [0.4, 0.2], [0.1, 0.1]])
    truth = np.array([[1, 1], [1, 1], [1, 0], [0, 0]])
    thresholds = tune_thresholds(probabilities, truth)
    assert 0.1 < thresholds[0] <= 0.4  # catches the third positive at 0.4 (F1 1.0)
    assert 0.2 < thresholds[1] <= 0.25  # 0.25 and 0.3 positive, 0.2 not


def test_metric_modules_agree_with_scikit_learn():
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score, f1_score, r2_score

    from hftl.metrics import multi_label_report, regression_report

    rng = np.random.default_rng(0)
    truth = (rng.random((50, 4)) > 0.6).astype(int)
    scores = np.clip(truth * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
    predicted = (scores > 0.5).astype(int)
    report = multi_label_report(predicted, truth, scores, list("abcd"))
    assert report["f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert report["f1_macro"] == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0)
    )
    assert report["f1_samples"] == pytest.approx(
        f1_score(truth, predicted, average="samples", zero_division=1)
    )
    assert report["mean_average_precision"] == pytest.approx(
        average_precision_score(truth, scores, average="macro")
    )
    assert report["accuracy"] == pytest.approx((predicted == truth).all(axis=1).mean())
    y = rng.normal(size=(40, 2))
    p = y + rng.normal(scale=0.5, size=(40, 2))
    result = regression_report(p, y, ["u", "v"])
    assert result["r2"] == pytest.approx(r2_score(y, p))
    assert result["per_target"]["v"]["spearman"] == pytest.approx(
        spearmanr(p[:, 1], y[:, 1]).statistic
    )
    assert result["per_target"]["u"]["pearson"] == pytest.approx(
        np.corrcoef(p[:, 0], y[:, 0])[0, 1]
    )


@pytest.mark.parametrize("shape_name", ["multi_label", "regression"])
def test_a_reference_task_of_every_shape_is_guarded_and_measured(bert, tmp_path, shape_name):
    # the reference model: the tiny BERT trained on several labels, or on ratings
    if shape_name == "multi_label":
        reference_file = write_jsonl(tmp_path / "ref.jsonl", tagged_reviews(60, 0))
        metric = "f1"
    else:
        reference_file = write_csv(tmp_path / "ref.csv", rated_reviews(60, 0))
        metric = "rmse"
    reference_model = tmp_path / "reference-model"
    run_recipe("sentiment", ["--model_name_or_path", str(bert), "--train_file", str(reference_file),
                             "--output_dir", str(reference_model), "--num_train_epochs", "2", *QUIET])  # fmt: skip
    new_task = write_csv(tmp_path / "new.csv", [{"text": r["text"], "label": r["label"]}
                                                 for r in toy_reviews(48, seed=7)])  # fmt: skip
    out = tmp_path / "out"
    _, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(reference_model), "--train_file", str(new_task),
        "--reference_train_file", str(reference_file), "--output_dir", str(out),
        "--guards", "lwf", "ewc", "replay", "--ewc_fisher_samples", "8", "--ewc_lambda", "10",
        "--num_train_epochs", "2", "--logging_steps", "1", *QUIET,
    ])  # fmt: skip
    reference = json.loads((out / "run_info.json").read_text())["reference"]
    assert reference["shape"] == shape_name and reference["metric"] == metric
    before, after = reference[f"{metric}_before"], reference[f"{metric}_after"]
    lost = after - before if metric == "rmse" else before - after
    assert reference["forgetting"] == pytest.approx(lost, abs=1e-4)
    assert trainer.reference.spec.shape is SHAPES.get(shape_name)
    if metric == "rmse":  # the saved reference model predicts ratings around 50 in their units
        assert before < 15, "the reference model's outputs were read in the wrong units"
    else:
        assert before > 0
    logged = [e for e in trainer.state.log_history if "guard_lwf" in e]
    assert logged and all(
        math.isfinite(e["guard_lwf"]) and math.isfinite(e["guard_ewc"]) and e["guard_replay"] > 0
        for e in logged
    )
    assert logged[0]["guard_lwf"] == pytest.approx(0.0, abs=1e-3)  # at step 1 (but dropout)
    assert f"{metric} {before:.4f} before training" in (out / "README.md").read_text()


def test_advise_scores_several_labels_and_numbers_with_logme_on_their_targets(bert, tmp_path):
    from hftl.cli import main
    from hftl.run import run_task
    from hftl.transferability import logme

    for name, rows, writer in (("tags.jsonl", tagged_reviews(40, 0), write_jsonl),
                               ("ratings.csv", rated_reviews(40, 0), write_csv)):  # fmt: skip
        data = writer(tmp_path / name, rows)
        out = tmp_path / name.split(".")[0]
        assert main(["advise", "--task", "text-classification", "--train_file", str(data), "--models",
                     str(bert), "--json", str(out / "advice.json"), "--write_config",
                     str(out / "advised.yaml"), "--output_dir", str(out / "run"),
                     "--feature_cache_dir", "memory", "--disable_tqdm", "true"]) == 0  # fmt: skip
        advice = json.loads((out / "advice.json").read_text())
        (scored,) = advice["models"]
        assert math.isfinite(scored["logme"])
        assert scored["probe_accuracy"] is None and scored["leep"] is None  # classes only
        # the written config runs as is, with the same shape
        _, trainer = run_task("text-classification", ["--config", str(out / "advised.yaml"),
                                                      "--max_steps", "1", *QUIET], prog="test")  # fmt: skip
        assert trainer.label_spec.shape.name == ("multi_label" if "tags" in name else "regression")
    # LogME of real-valued targets: the mean of each column's evidence
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8))
    targets = np.stack([features[:, 0] + rng.normal(scale=0.1, size=60), rng.normal(size=60)], 1)
    both = logme(features, targets)
    assert both == pytest.approx(
        (logme(features, targets[:, :1]) + logme(features, targets[:, 1:])) / 2
    )
    assert logme(features, targets[:, :1]) > logme(features, targets[:, 1:])  # the predictable one


@pytest.mark.parametrize("shape_name", ["multi_label", "regression"])
@pytest.mark.parametrize("task", ["image-classification", "audio-classification"])
def test_images_and_audio_of_every_shape_load_in_pipeline_as_hftl_predicts(
    task, shape_name, tmp_path
):
    """A JSON Lines file of image / audio paths with a list of tags or a number per file: the
    saved model's plain pipeline() gives what hftl's own reading of the logits gives."""
    from PIL import Image

    from hftl.testing import (
        save_tiny_audio_checkpoint,
        save_tiny_image_checkpoint,
        write_toy_audio_folder,
        write_toy_image_folder,
    )

    image = task == "image-classification"
    if image:
        model = save_tiny_image_checkpoint(tmp_path / "model", "vit")
        write_toy_image_folder(tmp_path / "files", per_class=6, odd_modes=False)
        classes, column = ("red", "green", "blue"), "image"
    else:
        model = save_tiny_audio_checkpoint(tmp_path / "model", "wav2vec2")
        write_toy_audio_folder(tmp_path / "files", per_class=6)
        classes, column = ("low", "mid", "high"), "audio"
    tags = {classes[0]: ["warm"], classes[1]: ["warm", "bright"], classes[2]: ["bright"]}
    rows = [
        {column: str(path), **({"tags": tags[name]} if shape_name == "multi_label"
                               else {"score": 10.0 * (classes.index(name) + 1)})}
        for name in classes for path in sorted((tmp_path / "files" / name).iterdir())
    ]  # fmt: skip
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    out = tmp_path / "out"
    recipe = "image_classification" if image else "audio_classification"
    extra = [] if image else ["--max_length_seconds", "1"]
    _, trainer = run_recipe(recipe, [
        "--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(out),
        "--validation_split_percentage", "25", "--max_steps", "3", *extra, *QUIET,
    ])  # fmt: skip
    spec = trainer.label_spec
    assert spec.shape is SHAPES.get(shape_name)
    names = spec.names
    files = [rows[0][column], rows[-1][column]]
    if image:
        processor = trainer.processing_class
        inputs = processor(
            images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt"
        )
        results = pipeline(task, model=str(out), top_k=None)([Image.open(f) for f in files])
    else:
        import soundfile

        waves = [soundfile.read(f, dtype="float32", always_2d=True) for f in files]
        import soxr

        rate = trainer.processing_class.sampling_rate
        waves = [soxr.resample(w.mean(axis=1), r, rate) for w, r in waves]
        inputs = trainer.processing_class(waves, sampling_rate=rate, return_tensors="pt",
                                          padding=True)  # fmt: skip
        results = [pipeline(task, model=str(out), top_k=None)({"raw": w, "sampling_rate": rate})
                   for w in waves]  # fmt: skip
    model = trainer.model.eval()
    with torch.no_grad():
        ours = spec.outputs(model(**inputs).logits.numpy())
    theirs = np.array(
        [[{r["label"]: r["score"] for r in row}[n] for n in names] for row in results]
    )
    tolerance = 1e-3 if image else 2e-2  # the audio pipeline pads each clip alone
    assert np.allclose(theirs, ours, atol=tolerance), (theirs, ours)


def test_regression_with_l2sp_wise_ft_and_early_stopping_keeps_the_datas_units(bert, tmp_path):
    train = write_csv(tmp_path / "train.csv", rated_reviews(64, 0))
    out = tmp_path / "out"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(bert), "--train_file", str(train), "--output_dir", str(out),
        "--num_train_epochs", "3", "--guards", "l2sp", "wise_ft", "--weight_decay", "0",
        "--wise_ft_alpha", "0.5", "--early_stopping_patience", "2", "--load_best_model_at_end",
        "true", "--eval_strategy", "epoch", "--save_strategy", "epoch", "--metric_for_best_model",
        "mae", "--report_to", "none", "--disable_tqdm", "true", "--learning_rate", "5e-3",
        "--per_device_train_batch_size", "16",
    ])  # fmt: skip
    assert trainer.args.greater_is_better is False  # mae: lower is better
    assert trainer.state.best_metric == min(e["eval_mae"] for e in trainer.state.log_history
                                            if "eval_mae" in e)  # fmt: skip
    texts = [r["text"] for r in toy_reviews(4, seed=9)]
    assert np.allclose(
        pipeline_outputs(out, texts, ["rating"]), hftl_outputs(trainer, texts), atol=1e-4
    )
    assert (
        "WiSE-FT" in (out / "README.md").read_text()
        and 35 < report["predicted_vs_true"]["predicted"][0] < 65
    )
    from hftl.guards.wise_ft import mix_run

    with pytest.raises(ConfigError, match="end points predict standardised targets"):
        mix_run(out, 0.3, tmp_path / "mixed")  # a new mixture would lose the data's units
