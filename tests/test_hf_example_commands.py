"""The command lines of the Hugging Face example scripts' READMEs run as they are, with only the
model and the data replaced by local tiny ones (transformers/examples/pytorch:
image-classification/README.md, text-classification/README.md, audio-classification/README.md)."""

import pytest
import yaml
from test_recipes import SENTIMENT_LABELS, run_recipe
from transformers import pipeline

from hftl.errors import ConfigError
from hftl.testing import (
    save_tiny_audio_checkpoint,
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    write_toy_audio_folder,
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
    save_tiny_audio_checkpoint(root / "wav2vec2", "wav2vec2", num_labels=2)
    write_toy_audio_folder(root / "audio-train", per_class=8, seed=0)
    write_toy_audio_folder(root / "audio-validation", per_class=3, seed=1)
    return root


def test_run_audio_classification_readme_command(local, tmp_path):
    # README: the keyword-spotting command, with --dataset_name superb --dataset_config_name ks ->
    # class folders, --fp16 left out (no GPU here) and the Hub push left out.
    out = tmp_path / "wav2vec2-base-ft-keyword-spotting"
    report, trainer = run_recipe("audio_classification", [
        "--model_name_or_path", str(local / "wav2vec2"), "--train_dir", str(local / "audio-train"),
        "--validation_dir", str(local / "audio-validation"), "--output_dir", str(out),
        "--remove_unused_columns", "False", "--do_train", "--do_eval", "--learning_rate", "3e-5",
        "--max_length_seconds", "1", "--attention_mask", "False", "--warmup_ratio", "0.1",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "32",
        "--gradient_accumulation_steps", "4", "--per_device_eval_batch_size", "32",
        "--dataloader_num_workers", "2", "--logging_strategy", "steps", "--logging_steps", "10",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "True",
        "--metric_for_best_model", "accuracy", "--save_total_limit", "3", "--seed", "0",
        "--freeze_feature_extractor", "True",
    ])  # fmt: skip
    assert trainer.args.warmup_steps == 0.1 and trainer.state.global_step == 2  # 24 clips / 128
    assert not trainer.model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.requires_grad
    assert report["labels"] == ["high", "low", "mid"]
    extractor = trainer.processing_class
    assert extractor.return_attention_mask is False  # --attention_mask False, saved so
    results = pipeline("audio-classification", model=str(out))(
        {"raw": __import__("numpy").zeros(8000, dtype="float32"), "sampling_rate": 16000}
    )
    assert {r["label"] for r in results} == {"high", "low", "mid"}


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


def write_hub_stand_in(root, name, config, splits: dict, features=None):
    """A local Hub dataset repository ``name`` (parquet files, its configuration in the README),
    found from the working directory as the Hub id is."""
    from datasets import Dataset

    repo = root / name
    for split, rows in splits.items():
        (repo / config).mkdir(parents=True, exist_ok=True)
        data = Dataset.from_list(rows, features=features)
        data.to_parquet(repo / config / f"{split}-00000-of-00001.parquet")
    files = "".join(f"  - split: {s}\n    path: {config}/{s}-*\n" for s in splits)
    (repo / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{files}---\n"
    )
    return repo


def reuters_rows(n, seed):
    from hftl.testing import toy_reviews

    return [{"text": r["text"], "title": "t", "topics": ([r["label"][:3]] if i % 4 else [])
             + (["long"] if len(r["text"].split()) > 8 else [])}
            for i, r in enumerate(toy_reviews(n, seed=seed))]  # fmt: skip


def test_run_classification_multi_label_readme_command(local, tmp_path, monkeypatch):
    # README: reuters21578 / ModApte, a list-valued label column (topics, some rows without a
    # topic); the repository is a local stand-in with the Hub layout (train, test, unused)
    write_hub_stand_in(tmp_path, "reuters21578", "ModApte",
                       {"train": reuters_rows(64, 0), "test": reuters_rows(24, 1),
                        "unused": reuters_rows(8, 2)})  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reuters21578"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--dataset_name", "reuters21578",
        "--dataset_config_name", "ModApte", "--shuffle_train_dataset", "--remove_splits", "unused",
        "--metric_name", "f1", "--text_column_name", "text", "--label_column_name", "topics",
        "--do_train", "--do_eval", "--max_seq_length", "512", "--per_device_train_batch_size",
        "32", "--learning_rate", "2e-5", "--num_train_epochs", "2", "--output_dir", str(out),
    ])  # fmt: skip
    assert trainer.model.config.problem_type == "multi_label_classification"
    assert report["labels"] == ["long", "neg", "pos"] and "f1_samples" in report
    assert (trainer.args.metric_for_best_model, trainer.args.greater_is_better) == ("f1", True)
    assert sum(s["support"] for s in report["per_label"].values()) == sum(
        len(r["topics"]) for r in reuters_rows(24, 1)
    )  # evaluated on the test split (no validation split), every topic counted
    scores = pipeline("text-classification", model=str(out), top_k=None)(["a fine film"])[0]
    assert {r["label"] for r in scores} == {"long", "neg", "pos"}
    assert sum(r["score"] for r in scores) != pytest.approx(1.0)  # a sigmoid each, not a softmax


def test_run_glue_stsb_and_do_regression_commands_are_regression(local, tmp_path, monkeypatch):
    from datasets import Features, Value

    from hftl.testing import toy_reviews

    def pairs(n, seed):
        return [{"sentence1": r["text"], "sentence2": r["text"][::-1],
                 "label": (4.0 if r["label"] == "positive" else 1.0) + (i % 3) * 0.25, "idx": i}
                for i, r in enumerate(toy_reviews(n, seed=seed))]  # fmt: skip

    features = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                         "label": Value("float32"), "idx": Value("int32")})  # fmt: skip
    write_hub_stand_in(tmp_path / "nyu-mll", "glue", "stsb",
                       {"train": pairs(48, 0), "validation": pairs(24, 1),
                        "test": [{**p, "label": -1.0} for p in pairs(8, 2)]}, features)  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "stsb"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--task_name", "stsb", "--do_train",
        "--do_eval", "--max_seq_length", "128", "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5", "--num_train_epochs", "3", "--output_dir", str(out),
    ])  # fmt: skip
    assert trainer.model.config.problem_type == "regression"
    assert {"pearson", "spearman", "rmse"} <= set(report) and report["targets"] == ["label"]
    first = trainer.train_dataset[0]
    assert first["input_ids"].count(trainer.processing_class.sep_token_id) == 2  # a pair
    # run_classification.py's own-data form with --do_regression: integer scores, numbers
    path = tmp_path / "scores.csv"
    path.write_text("sentence,label\n" + "".join(
        f"{r['text']},{5 if r['label'] == 'positive' else 1}\n" for r in toy_reviews(40, seed=3)))  # fmt: skip
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--train_file", str(path), "--do_regression",
        "--max_steps", "2", "--output_dir", str(tmp_path / "reg"),
    ])  # fmt: skip
    assert trainer.model.config.problem_type == "regression" and "r2" in report


def test_run_classification_amazon_command_joins_the_comma_listed_columns(
    local, tmp_path, monkeypatch
):
    # README: amazon_reviews_multi with --text_column_name "review_title,review_body,product_category"
    # (argparse's abbreviation of --text_column_names in run_classification.py)
    from hftl.testing import toy_reviews

    def reviews(n, seed):
        return [{"review_title": r["text"].split()[0], "review_body": r["text"],
                 "product_category": "film", "stars": 5 if r["label"] == "positive" else 1}
                for r in toy_reviews(n, seed=seed)]  # fmt: skip

    write_hub_stand_in(tmp_path, "amazon_reviews_multi", "all_languages",
                       {"train": reviews(48, 0), "validation": reviews(16, 1)})  # fmt: skip
    monkeypatch.chdir(tmp_path)
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--dataset_name", "amazon_reviews_multi",
        "--dataset_config_name", "all_languages", "--shuffle_train_dataset", "--metric_name",
        "accuracy", "--text_column_name", "review_title,review_body,product_category",
        "--text_column_delimiter", "\n", "--label_column_name", "stars", "--do_train",
        "--do_eval", "--max_seq_length", "512", "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5", "--num_train_epochs", "1", "--output_dir", str(tmp_path / "a"),
    ])  # fmt: skip
    assert report["labels"] == [
        "1",
        "5",
    ]  # integer stars: classes, as run_classification reads them
    tokens = trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"])
    assert "film" in tokens.split()[-2:]  # the category column joined after title and body


def write_glue_stand_in(root, task, first, second, size=48):
    """A local ``nyu-mll/glue`` with the Hub repository's layout (one parquet folder per task,
    configurations in the README) and its conventions: ClassLabel labels, test labels hidden
    (-1). Toy reviews stand in for the sentences: the label is the first text's sentiment."""
    from datasets import ClassLabel, Features, Value

    from hftl.testing import toy_reviews

    features = Features({first: Value("string"), second: Value("string"),
                         "label": ClassLabel(names=["negative", "positive"]), "idx": Value("int32")})  # fmt: skip
    splits = {}
    for split, seed in (("train", 0), ("validation_matched" if task == "mnli" else "validation", 1),
                        ("test", 2)):  # fmt: skip
        rows = toy_reviews(
            size if split == "train" else size // 2, labels=("negative", "positive"), seed=seed
        )
        splits[split] = [
            {first: r["text"], second: r["text"][::-1], "idx": i,
             "label": -1 if split == "test" else ["negative", "positive"].index(r["label"])}
            for i, r in enumerate(rows)
        ]  # fmt: skip
    return write_hub_stand_in(root / "nyu-mll", "glue", task, splits, features)


def test_run_glue_readme_command_with_task_name(local, tmp_path, monkeypatch):
    # README: --task_name $TASK_NAME (mrpc, a sentence-pair task); nyu-mll/glue is a local
    # stand-in with the Hub repository's layout, found from the working directory
    write_glue_stand_in(tmp_path, "mrpc", "sentence1", "sentence2")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mrpc"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--task_name", "mrpc", "--do_train",
        "--do_eval", "--do_predict", "--max_seq_length", "128", "--per_device_train_batch_size",
        "32", "--learning_rate", "2e-5", "--num_train_epochs", "3", "--output_dir", str(out),
    ])  # fmt: skip
    assert trainer.state.global_step == 6  # 48 training pairs, batch 32, 3 epochs
    # --do_predict: GLUE's test labels are hidden (-1): the pairs are predicted, not scored
    assert len((out / "predict_results.txt").read_text().splitlines()) == 1 + 24
    assert not (out / "predict_report.json").exists()
    assert sum(s["support"] for s in report["per_class"].values()) == 24  # validation, not test
    first = trainer.train_dataset[0]
    assert 1 in first["token_type_ids"]  # the pair was encoded together: [CLS] a [SEP] b [SEP]
    assert first["input_ids"].count(trainer.processing_class.sep_token_id) == 2


def test_run_glue_imdb_command_with_do_predict_writes_its_predictions(local, tmp_path, monkeypatch):
    # README: --dataset_name imdb --do_train --do_predict (imdb has train, test and unsupervised
    # splits, no validation); a local stand-in with the Hub layout
    from datasets import ClassLabel, Features, Value

    from hftl.testing import toy_reviews

    def reviews(n, seed):
        return [{"text": r["text"], "label": ["negative", "positive"].index(r["label"])}
                for r in toy_reviews(n, seed=seed)]  # fmt: skip

    features = Features({"text": Value("string"),
                         "label": ClassLabel(names=["neg", "pos"])})  # fmt: skip
    write_hub_stand_in(tmp_path, "imdb", "plain_text",
                       {"train": reviews(60, 0), "test": reviews(21, 1),
                        "unsupervised": [{**r, "label": -1} for r in reviews(8, 2)]}, features)  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "imdb"
    report, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(local / "bert"), "--dataset_name", "imdb", "--do_train",
        "--do_predict", "--max_seq_length", "128", "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5", "--num_train_epochs", "3", "--output_dir", str(out),
    ])  # fmt: skip
    # the test split is predicted, so validation is held out of train (10%), never the test split
    assert sum(s["support"] for s in report["per_class"].values()) == 6
    lines = (out / "predict_results.txt").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 22
    assert {line.split("\t")[1] for line in lines[1:]} <= {"neg", "pos"}
    rows = [
        __import__("json").loads(r) for r in (out / "predictions.jsonl").read_text().splitlines()
    ]
    assert [r["input"] for r in rows] == [r["text"] for r in reviews(21, 1)]
    scored = __import__("json").loads((out / "predict_report.json").read_text())
    truth = [["neg", "pos"][r["label"]] for r in reviews(21, 1)]
    assert scored["accuracy"] == pytest.approx(
        sum(r["label"] == t for r, t in zip(rows, truth, strict=True)) / 21
    )  # fmt: skip


def test_glue_task_names_map_to_the_dataset_its_columns_and_split(local, tmp_path):
    from hftl.run import parse_run_config

    argv = ["--model_name_or_path", str(local / "bert"), "--output_dir", str(tmp_path / "o")]
    _, data, text, _, _ = parse_run_config("text-classification", [*argv, "--task_name", "mnli"])
    assert (data.dataset_name, data.dataset_config_name, data.eval_split_name) == (
        "nyu-mll/glue",
        "mnli",
        "validation_matched",
    )
    assert (text.text_column_name, text.text_pair_column_name) == ("premise", "hypothesis")
    _, data, text, _, _ = parse_run_config("text-classification", [*argv, "--task_name", "sst2"])
    assert (text.text_column_name, text.text_pair_column_name) == ("sentence", None)
    _, data, text, _, _ = parse_run_config("text-classification", [*argv, "--task_name", "stsb"])
    assert (data.dataset_config_name, data.problem_type) == ("stsb", "regression")


def test_a_split_without_labels_or_missing_is_refused(local, tmp_path, monkeypatch):
    write_glue_stand_in(tmp_path, "rte", "sentence1", "sentence2")
    monkeypatch.chdir(tmp_path)
    argv = ["--model_name_or_path", str(local / "bert"), "--task_name", "rte",
            "--output_dir", str(tmp_path / "o"), "--max_steps", "1", "--report_to", "none"]  # fmt: skip
    with pytest.raises(ConfigError, match="split 'validation': rows with 'label' -1"):
        run_recipe("sentiment", [*argv, "--eval_split_name", "test"])
    with pytest.raises(
        ConfigError, match="--eval_split_name dev: .* has no such split .*train, validation, test"
    ):
        run_recipe("sentiment", [*argv, "--eval_split_name", "dev"])


def test_example_flags_map_onto_hftl_or_say_why_not(local, tmp_path, hftl_logs):
    from hftl.run import parse_run_config

    base = ["--model_name_or_path", str(local / "bert"), "--train_file", str(local / "train.csv"),
            "--output_dir", str(tmp_path / "o")]  # fmt: skip
    model, data, text, training, _ = parse_run_config("text-classification", [
        *base, "--model_revision", "v2", "--tokenizer_name", str(local / "bert"),
        "--train_val_split", "0.25", "--text_column_names", "review", "--test_file",
        str(local / "validation.csv"), "--max_predict_samples", "5",
    ], prog="run_classification.py")  # fmt: skip
    assert (model.revision, model.processor_name) == ("v2", str(local / "bert"))
    assert data.validation_split_percentage == 25.0 and text.joined_columns == ["review"]
    assert training.do_predict and data.max_predict_samples == 5  # a test file is predicted
    refused = {
        ("--task_name", "sst2"): "--task_name sst2 reads nyu-mll/glue; drop it",
        ("--text_column_names", "title,body", "--text_column_name", "x"): "give one of them",
        ("--metric_name", "matthews_correlation"): "hftl reports accuracy",
        ("--do_regression", "--problem_type", "multi_label_classification"): "give one of them",
        ("--model_revision", "v2", "--revision", "v3"): "give one of them",
    }
    for flags, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            parse_run_config("text-classification", [*base, *flags], prog="run_glue.py")


def test_text_column_names_are_joined_as_run_classification_joins_them(tmp_path):
    import csv

    from hftl.tasks.text_classification import TextClassificationArguments, join_text_columns

    rows = [{"title": "Great", "body": "a fine film", "label": "positive"},
            {"title": "", "body": "bad and awful", "label": "negative"}]  # fmt: skip
    with open(tmp_path / "news.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from datasets import load_dataset

    data = load_dataset("csv", data_files=str(tmp_path / "news.csv"))
    args = TextClassificationArguments(text_column_names="title, body", text_column_delimiter=" | ")
    joined = join_text_columns(data, args.joined_columns, args.text_column_delimiter)
    assert joined["train"]["title"] == ["Great | a fine film", "bad and awful"]
    from hftl.testing import save_tiny_text_checkpoint

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    _, trainer = run_recipe("sentiment", [
        "--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "news.csv"),
        "--validation_file", str(tmp_path / "news.csv"), "--text_column_names", "title,body",
        "--text_column_delimiter", " | ", "--output_dir", str(tmp_path / "o"), "--max_steps", "1",
        "--report_to", "none",
    ])  # fmt: skip
    decoded = trainer.processing_class.decode(trainer.eval_dataset[1]["input_ids"])
    assert decoded == "[CLS] bad and awful [SEP]"  # the empty title left out, not refused
    blank = data.map(lambda row: {"title": "", "body": " "})
    with pytest.raises(ConfigError, match="data row 1 has an empty 'title'"):
        join_text_columns(blank, ["title", "body"], " ")


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
