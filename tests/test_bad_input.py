"""Bad input, one test per class: a one-line error naming the file, row, column, class or flag and
what to do; never a traceback, never a silently wrong run, nothing trained or written."""

import os
from pathlib import Path

import pytest

from hftl.errors import ConfigError, run_main
from hftl.testing import (
    load_script,
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    write_toy_image_folder,
    write_toy_reviews_csv,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
QUIET = ["--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--save_strategy", "no",
         "--max_steps", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    save_tiny_image_checkpoint(root / "vit", "vit", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 60, seed=0)
    write_toy_image_folder(root / "images", per_class=8, odd_modes=False)
    return root


def sentiment(assets, out, *flags, model="bert"):
    argv = ["--model_name_or_path", str(assets / model), "--output_dir", str(out), *QUIET, *flags]
    if "--train_file" not in flags:
        argv += ["--train_file", str(assets / "train.csv")]
    return load_script(RECIPES / "sentiment.py").main(argv)


def images(assets, out, *flags, model="vit"):
    argv = ["--model_name_or_path", str(assets / model), "--output_dir", str(out), *QUIET, *flags]
    if "--train_dir" not in flags:
        argv += ["--train_dir", str(assets / "images")]
    return load_script(RECIPES / "image_classification.py").main(argv)


def refused(run, match: str) -> str:
    """Run, expect ConfigError matching ``match``; return its message after checking it is one line."""
    with pytest.raises(ConfigError, match=match) as error:
        run()
    message = str(error.value)
    assert "\n" not in message
    return message


def nothing_saved(out: Path) -> bool:
    return not (out / "model.safetensors").exists() and not list(out.glob("checkpoint-*"))


# --------------------------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------------------------


def write(path: Path, data) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.csv", b"", r"--train_file .*empty\.csv: the file is empty"),
        ("header.csv", "text,label\n", r"--train_file .*header\.csv: no rows; give a file with data"),
        ("binary.csv", bytes(range(256)) * 4, r"binary\.csv: binary content, not CSV text; give a CSV file"),
        ("latin1.csv", "text,label\ngood film,pos\ncaf\u00e9 story,neg\n".encode("latin-1"),
         r"latin1\.csv: line 3 is not UTF-8 \(byte 0xe9 at character 4\); save the file as UTF-8, for example iconv"),
        ("ragged.csv", "text,label\ngood film,pos\nbad,neg,extra,fields\n",
         r"ragged\.csv: cannot be read as CSV \(.*Expected 2 fields in line 3, saw 4"),
        ("broken.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label"\n',
         r"broken\.jsonl: cannot be read as JSON \("),
        ("fake.parquet", "text,label\na,b\n", r"fake\.parquet: not a Parquet file"),
    ],
)  # fmt: skip
def test_unreadable_data_files_are_named(assets, tmp_path, name, content, match):
    path = write(tmp_path / name, content)
    refused(lambda: sentiment(assets, tmp_path / "out", "--train_file", str(path)), match)
    assert nothing_saved(tmp_path / "out")


def test_train_and_validation_files_with_other_columns(assets, tmp_path):
    rows = (assets / "train.csv").read_text().splitlines()
    no_label = write(
        tmp_path / "train.csv", "\n".join(["text"] + [r.rsplit(",", 1)[0] for r in rows[1:]])
    )
    refused(
        lambda: sentiment(
            assets,
            tmp_path / "out",
            "--train_file",
            str(no_label),
            "--validation_file",
            str(assets / "train.csv"),
        ),  # fmt: skip
        r"the training and validation files need the same columns: --train_file .*train\.csv lacks label$",
    )


# --------------------------------------------------------------------------------------------
# Columns and labels
# --------------------------------------------------------------------------------------------


def test_real_valued_labels_are_not_classes_when_classes_are_asked_for(assets, tmp_path):
    path = write(
        tmp_path / "scores.csv",
        "text,score\n" + "".join(f"film {i},{i / 7:.3f}\n" for i in range(30)),
    )
    refused(
        lambda: sentiment(
            assets,
            tmp_path / "out",
            "--train_file",
            str(path),
            "--label_column_name",
            "score",
            "--problem_type",
            "single_label_classification",
        ),  # fmt: skip
        r"label column 'score' holds real numbers \(0\.143, 0\.286, 0\.429, \.\.\.\) but "
        r"--problem_type single_label_classification says classes: use --problem_type regression",
    )


def test_integer_valued_float_labels_are_classes_when_asked_and_else_regression(assets, tmp_path):
    path = write(tmp_path / "stars.csv", "text,stars\n" + "".join(
        f"{'great' if i % 2 else 'awful'} film {i},{float(1 + 4 * (i % 2))}\n" for i in range(40)))  # fmt: skip
    report, _ = sentiment(
        assets, tmp_path / "out", "--train_file", str(path), "--label_column_name", "stars",
        "--problem_type", "single_label_classification",
    )  # fmt: skip
    assert report["labels"] == ["1", "5"]
    # a float column is regression unless told otherwise, as run_classification.py decides
    report, trainer = sentiment(
        assets, tmp_path / "reg", "--train_file", str(path), "--label_column_name", "stars"
    )
    assert report["targets"] == ["stars"] and trainer.model.config.problem_type == "regression"


def test_a_single_class_is_not_a_classification_task(assets, tmp_path):
    path = write(
        tmp_path / "one.csv", "text,label\n" + "".join(f"film {i},pos\n" for i in range(20))
    )
    refused(lambda: sentiment(assets, tmp_path / "out", "--train_file", str(path)),
            r"the training data has one class \('pos'\); a classifier needs training examples of two classes")  # fmt: skip


def test_one_training_class_folder_is_one_line_naming_the_others(assets, tmp_path):
    from hftl.testing import write_toy_image_folder

    write_toy_image_folder(tmp_path / "train", per_class=6, classes=("red",), seed=0)
    write_toy_image_folder(tmp_path / "val", per_class=2, seed=1)
    refused(
        lambda: images(assets, tmp_path / "out", "--train_dir", str(tmp_path / "train"),
                       "--validation_dir", str(tmp_path / "val")),
        r"the training data has one class \('red'\) \(the other splits also have blue, green\); "
        r"a classifier needs training examples of two classes",
    )  # fmt: skip


def test_train_and_validation_folders_at_different_depths_keep_their_labels(assets, tmp_path):
    from hftl.testing import write_toy_image_folder

    write_toy_image_folder(tmp_path / "train", per_class=4, seed=0, odd_modes=False)
    write_toy_image_folder(tmp_path / "a" / "b" / "val", per_class=2, seed=1, odd_modes=False)
    report, _ = images(assets, tmp_path / "out", "--train_dir", str(tmp_path / "train"),
                       "--validation_dir", str(tmp_path / "a" / "b" / "val"))  # fmt: skip
    assert report["labels"] == ["blue", "green", "red"]
    assert [s["support"] for s in report["per_class"].values()] == [2, 2, 2]


def test_a_column_of_numbers_is_not_text(assets, tmp_path):
    path = write(
        tmp_path / "ids.csv",
        "text,id,label\n" + "".join(f"film {i},{i},{'ab'[i % 2]}\n" for i in range(20)),
    )
    refused(lambda: sentiment(assets, tmp_path / "out", "--train_file", str(path), "--text_column_name", "id"),
            r"column 'id' holds int64, not text; name the text column with --text_column_name")  # fmt: skip


def test_validation_class_never_seen_in_training_is_an_error(assets, tmp_path):
    validation = write(tmp_path / "validation.csv", "text,label\n" + "".join(
        f"film {i},{['negative', 'positive', 'neutral'][i % 3]}\n" for i in range(30)))  # fmt: skip
    refused(
        lambda: sentiment(assets, tmp_path / "out", "--validation_file", str(validation)),
        r"class 'neutral' \(10 validation rows\) never occurs in the training data; add training "
        r"examples of it, remove it, or pass --drop_unseen_validation_labels true",
    )
    assert nothing_saved(tmp_path / "out")


def test_validation_class_never_seen_dropped_on_request(assets, tmp_path, hftl_logs):
    validation = write(tmp_path / "validation.csv", "text,label\n" + "".join(
        f"film {i},{['negative', 'positive', 'neutral'][i % 3]}\n" for i in range(30)))  # fmt: skip
    report, trainer = sentiment(assets, tmp_path / "out", "--validation_file", str(validation),
                                "--drop_unseen_validation_labels", "true")  # fmt: skip
    assert report["labels"] == ["negative", "positive"]
    assert trainer.model.config.id2label == {0: "negative", 1: "positive"}
    assert sum(c["support"] for c in report["per_class"].values()) == 20
    assert any(
        "dropping class 'neutral' (10 validation rows)" in r.getMessage() for r in hftl_logs.records
    )


def test_validation_split_too_small_for_every_class(assets, tmp_path):
    refused(lambda: sentiment(assets, tmp_path / "out", "--validation_split_percentage", "1"),
            r"--validation_split_percentage 1.0 of 60 training examples cannot hold out every one of "
            r"the 2 classes \(.*\); raise it, or give a validation split")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


def copy_images(assets, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(assets / "images", tmp_path / "images"))


def test_an_empty_class_folder_is_not_silently_dropped(assets, tmp_path):
    folder = copy_images(assets, tmp_path)
    (folder / "purple").mkdir()
    refused(lambda: images(assets, tmp_path / "out", "--train_dir", str(folder)),
            r"--train_dir .*images: class folder 'purple' has no images; add images or remove the folder")  # fmt: skip


def test_a_broken_link_among_the_images_is_named(assets, tmp_path):
    folder = copy_images(assets, tmp_path)
    os.symlink(tmp_path / "gone.png", folder / "red" / "dead.png")
    refused(lambda: images(assets, tmp_path / "out", "--train_dir", str(folder)),
            r"red/dead\.png is a broken link \(to .*gone\.png\); fix or remove it")  # fmt: skip


@pytest.mark.parametrize(
    "where,match",
    [
        ("loose.png", r"loose\.png is not in a class folder; put every image in one sub-folder per class"),
        ("red/indoor/a.png", r"red/indoor/a\.png is in a folder below class folder 'red'; put each image directly"),
    ],
)  # fmt: skip
def test_images_outside_the_class_folders_are_named(assets, tmp_path, where, match):
    folder = copy_images(assets, tmp_path)
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / "red" / "0.png").rename(folder / where)
    refused(lambda: images(assets, tmp_path / "out", "--train_dir", str(folder)), match)


def test_a_folder_without_class_folders(tmp_path, assets):
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images")
    refused(lambda: images(assets, tmp_path / "out", "--train_dir", str(folder)),
            r"--train_dir .*flat: no class folders; put the images in one sub-folder per class")  # fmt: skip


def test_files_that_are_not_images_are_left_out_with_a_log_line(assets, tmp_path, hftl_logs):
    folder = copy_images(assets, tmp_path)
    (folder / "red" / "notes.txt").write_text("camera settings")
    (folder / "labels.csv").write_text("file,label\n")
    report, trainer = images(assets, tmp_path / "out", "--train_dir", str(folder))
    assert report["labels"] == ["blue", "green", "red"]
    assert (
        len(trainer.train_dataset) + sum(c["support"] for c in report["per_class"].values()) == 24
    )
    assert any("left out 2 files that are not images (labels.csv, red/notes.txt)" in r.getMessage()
               for r in hftl_logs.records)  # fmt: skip


def test_a_validation_folder_class_missing_from_training(assets, tmp_path):
    train = copy_images(assets, tmp_path)
    validation = write_toy_image_folder(tmp_path / "validation", per_class=2, odd_modes=False)
    import shutil

    shutil.rmtree(train / "green")
    refused(lambda: images(assets, tmp_path / "out", "--train_dir", str(train), "--validation_dir", str(validation)),
            r"class 'green' \(2 validation rows\) never occurs in the training data")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Model paths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,match",
    [
        ("missing", r"--model_name_or_path .*missing: no such directory$"),
        ("train.csv", r"--model_name_or_path .*train\.csv: a file; give the directory that holds config\.json"),
        ("images", r"--model_name_or_path .*images: no config\.json in this directory; give a directory written by save_pretrained"),
        ("vit", r"--model_name_or_path .*vit: a 'vit' model, which AutoModelForSequenceClassification cannot build"),
    ],
)  # fmt: skip
def test_bad_model_paths_are_named_before_the_data_is_read(assets, tmp_path, model, match):
    message = refused(lambda: sentiment(assets, tmp_path / "out", model=model), match)
    assert "repo id" not in message.lower()


def test_an_unreachable_hub_model_says_what_to_check(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["--model_name_or_path", "some-org/no-such-model", "--train_file", str(assets / "train.csv"),
            "--output_dir", str(tmp_path / "out"), *QUIET]  # fmt: skip
    refused(lambda: load_script(RECIPES / "sentiment.py").main(argv),
            r"--model_name_or_path some-org/no-such-model: cannot load its config \(.*\); check the "
            r"model id, the network \(HF_HUB_OFFLINE\), and HF_TOKEN")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Flags and the output directory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--per_device_train_batch_size", "0"], r"--per_device_train_batch_size 0: must be >= 1"),
        (["--learning_rate", "-0.1"], r"--learning_rate -0.1: must be >= 0"),
        (["--num_train_epochs", "0", "--max_steps", "-1"], r"--num_train_epochs 0.0: must be > 0"),
        (["--gradient_accumulation_steps", "0"], r"--gradient_accumulation_steps 0: must be >= 1"),
        (["--max_seq_length", "0"], r"--max_seq_length 0: must be >= 1"),
        (["--strategy", "partal"], r"argument --strategy: invalid choice: 'partal'"),
    ],
)  # fmt: skip
def test_nonsense_flag_values_are_named(assets, tmp_path, flags, match):
    refused(lambda: sentiment(assets, tmp_path / "out", *flags), match)
    assert not (tmp_path / "out").exists()


def test_output_dir_below_a_file(assets, tmp_path):
    refused(lambda: sentiment(assets, assets / "train.csv" / "out"),
            r"--output_dir .*train\.csv/out: .*train\.csv is a file, so no directory can be made below it")  # fmt: skip


def test_output_dir_holding_a_finished_run_is_kept(assets, tmp_path):
    out = tmp_path / "out"
    sentiment(assets, out)
    saved = (out / "model.safetensors").read_bytes()
    refused(lambda: sentiment(assets, out, "--learning_rate", "0.1"),
            r"--output_dir .*out already holds a finished run \(run_info\.json, the model\); choose "
            r"another --output_dir, or pass --overwrite_output_dir true to replace it")  # fmt: skip
    assert (out / "model.safetensors").read_bytes() == saved
    sentiment(assets, out, "--learning_rate", "0.1", "--overwrite_output_dir", "true")
    assert (out / "model.safetensors").read_bytes() != saved
    log = (out / "train.log").read_text()  # the replaced run's log went with it
    assert (
        log.count("labels (single_label): [") == 1
        and "learning_rate: 0.1" in (out / "run_config.yaml").read_text()
    )


def test_output_dir_holding_a_model_no_hftl_run_wrote(assets, tmp_path):
    import shutil

    out = Path(shutil.copytree(assets / "bert", tmp_path / "out"))
    refused(lambda: sentiment(assets, out),
            r"--output_dir .*out already holds a model \(model\.safetensors\) that no hftl run there wrote")  # fmt: skip


def test_overwrite_and_resume_from_the_same_directory_contradict(assets, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    refused(
        lambda: sentiment(
            assets,
            out,
            "--overwrite_output_dir",
            "true",
            "--resume_from_checkpoint",
            str(out / "checkpoint-2"),
        ),  # fmt: skip
        r"--overwrite_output_dir removes the checkpoints in .*out, and --resume_from_checkpoint .* reads one of them",
    )


def test_resume_from_a_missing_checkpoint(assets, tmp_path):
    refused(lambda: sentiment(assets, tmp_path / "out", "--resume_from_checkpoint", str(tmp_path / "checkpoint-9")),
            r"--resume_from_checkpoint .*checkpoint-9: not a complete checkpoint \(no such directory\)")  # fmt: skip


# --------------------------------------------------------------------------------------------
# The boundary: one line on the screen, the traceback on request
# --------------------------------------------------------------------------------------------


def bad():
    raise ConfigError("--train_file x.csv: the file is empty")


def test_run_main_prints_one_line_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("HFTL_DEBUG", raising=False)
    assert run_main(bad, "sentiment.py") == 2
    assert capsys.readouterr().err == "sentiment.py: error: --train_file x.csv: the file is empty\n"


def test_hftl_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("HFTL_DEBUG", "1")
    with pytest.raises(ConfigError, match="the file is empty"):
        run_main(bad, "sentiment.py")


def test_ctrl_c_says_how_to_continue(capsys, monkeypatch):
    monkeypatch.delenv("HFTL_DEBUG", raising=False)

    def interrupted():
        raise KeyboardInterrupt

    assert run_main(interrupted, "sentiment.py") == 130
    assert "run the same command again to continue" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback():
    def buggy():
        raise ZeroDivisionError("a bug in hftl")

    with pytest.raises(ZeroDivisionError):
        run_main(buggy, "sentiment.py")


def test_a_missing_image_path_in_a_csv_is_named_with_the_directory_it_was_read_from(
    assets, tmp_path, monkeypatch
):
    import csv

    paths = sorted((assets / "images").glob("*/*.png"))
    with open(tmp_path / "images.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        writer.writerows([str(p), p.parent.name] for p in paths)
        writer.writerow(["photos/missing.png", "red"])
    monkeypatch.chdir(tmp_path)
    message = refused(
        lambda: images(assets, tmp_path / "out", "--train_file", "images.csv", "--train_dir", ""),
        r"split 'train': data row \d+: no image file photos/missing\.png",
    )
    assert message.endswith(
        f"(a relative path is read from the current directory, {tmp_path}); fix the path or "
        "drop the row"
    )
    assert nothing_saved(tmp_path / "out")
