"""scripts/class_weights_study.py: its runs are valid recipe arguments, its data keeps one class
at 10%, its report reads the rows right. (The study itself runs for minutes on real data.)"""

import csv
import sys
from pathlib import Path

import pytest

from hftl.run import parse_run_config
from hftl.testing import load_script, write_toy_image_folder, write_toy_reviews_csv

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(SCRIPTS))  # it imports transfer_study's helpers, as when it runs
    try:
        yield load_script(SCRIPTS / "class_weights_study.py")
    finally:
        sys.path.remove(str(SCRIPTS))


def test_text_data_keeps_the_rare_class_at_a_tenth_and_every_setting_parses(study, tmp_path):
    asset = tmp_path / "rotten-tomatoes"
    asset.mkdir()
    write_toy_reviews_csv(asset / "train.csv", 400, seed=0)
    write_toy_reviews_csv(asset / "validation.csv", 40, seed=1)
    task = {**study.TASKS["text"], "rare": "negative", "per_class": 100}
    data = study.text_data(asset, tmp_path / "work", task)
    with open(data[1], newline="") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    assert (labels.count("positive"), labels.count("negative")) == (100, 10)
    for setting, flags in study.SETTINGS.items():
        argv = ["--model_name_or_path", task["model"], *data, *task["flags"], "--strategy",
                "feature_extraction", *flags, "--output_dir", str(tmp_path / setting)]  # fmt: skip
        _, data_args, _, training, _ = parse_run_config("text-classification", argv)
        assert data_args.class_weights == (None if setting == "none" else setting)
        assert training.strategy == "feature_extraction"


def test_image_data_keeps_the_rare_digit_at_a_tenth(study, tmp_path):
    write_toy_image_folder(tmp_path / "mnist" / "train", per_class=30, odd_modes=False)
    task = {**study.TASKS["images"], "rare": "red", "per_class": 20}
    data = study.image_data(tmp_path / "mnist", tmp_path / "work", task)
    counts = {d.name: len(list(d.iterdir())) for d in (tmp_path / "work" / "train").iterdir()}
    assert counts == {"red": 2, "green": 20, "blue": 20}
    assert data[:2] == ["--train_dir", str(tmp_path / "work" / "train")]


def test_report_averages_each_setting_over_its_seeds(study, tmp_path):
    rows = [
        {"task": "text", "setting": setting, "seed": seed, "macro_f1": f1 + seed * 0.02,
         "accuracy": 0.9, "rare_recall": recall + seed * 0.1, "rare_precision": 0.5,
         "other_recall": 0.95, "weights": weights, "train_counts": [1000, 100], "seconds": 1.0}
        for setting, f1, recall, weights in (("none", 0.6, 0.2, None),
                                             ("inverse", 0.7, 0.5, [0.55, 5.5]),
                                             ("effective", 0.68, 0.4, [0.6, 4.0]))
        for seed in (0, 1)
    ]  # fmt: skip
    out = tmp_path / "study.md"
    study.write_report(rows, ["text"], [0, 1], out, seconds=60)
    text = out.read_text()
    assert "| none | 0.610 ± 0.014 | 90.0% ± 0.0% | 25.0% ± 7.1% |" in text
    assert "| inverse | 0.710 ± 0.014 |" in text and "| 0.55, 5.50 |" in text
    assert "python scripts/class_weights_study.py --tasks text --seeds 0,1" in text
