"""recipes/demo.py (the README's main command) end to end, on tiny stand-ins for the assets."""

import importlib
import json
import re
from pathlib import Path

import pytest

from hftl.testing import (
    save_tiny_audio_checkpoint,
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    toy_reviews,
    write_toy_audio_folder,
    write_toy_image_folder,
    write_toy_reviews_csv,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
QUIET = "report_to: none\nuse_cpu: true\ndisable_tqdm: true\nsave_strategy: 'no'\nseed: 0\n"


def test_demo_trains_every_task_with_baselines_and_classifies_held_out_examples(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(RECIPES))
    demo = importlib.import_module("demo")

    reviews, digits, voices = tmp_path / "rotten-tomatoes", tmp_path / "mnist", tmp_path / "gcin"
    reviews.mkdir()
    for split, seed in (("train", 0), ("validation", 1), ("test", 2)):
        write_toy_reviews_csv(
            reviews / f"{split}.csv", 60, labels=("negative", "positive"), seed=seed
        )
        write_toy_image_folder(digits / split, per_class=6, seed=seed, odd_modes=False)
    for split, seed in (("train", 0), ("validation", 1)):
        write_toy_audio_folder(voices / "initial" / split, per_class=4, seed=seed)
    vader = tmp_path / "vader"
    vader.mkdir()
    with open(reviews / "train.csv") as source:  # ratings: +2.5 for positive reviews, -2 else
        rows = source.read().splitlines()[1:]
    (vader / "tweets.csv").write_text("text,label,rating\n" + "".join(
        f"{row},{2.5 if row.endswith('positive') else -2.0}\n" for row in rows))  # fmt: skip
    save_tiny_text_checkpoint(tmp_path / "text-model", "bert")
    save_tiny_image_checkpoint(tmp_path / "image-model", "vit")
    save_tiny_audio_checkpoint(tmp_path / "audio-model", "whisper")
    image_yaml, text_yaml = tmp_path / "demo_image.yaml", tmp_path / "demo_text.yaml"
    inquirer = tmp_path / "general-inquirer"
    inquirer.mkdir()
    for split, seed in (("train", 0), ("validation", 1), ("test", 2)):
        rows = toy_reviews(40, seed=seed)
        (inquirer / f"{split}.jsonl").write_text("".join(json.dumps(
            {"text": r["text"], "categories": [r["label"]] + (["long"] if len(r["text"]) > 40 else [])}
        ) + "\n" for r in rows))  # fmt: skip
    tags_yaml = tmp_path / "demo_tags.yaml"
    tags_yaml.write_text(
        f"model_name_or_path: {tmp_path / 'text-model'}\ntrain_file: {inquirer / 'train.jsonl'}\n"
        f"validation_file: {inquirer / 'validation.jsonl'}\nlabel_column_name: categories\n"
        f"strategy: full\nmax_steps: 2\n{QUIET}"
    )
    audio_yaml, ratings_yaml = tmp_path / "demo_audio.yaml", tmp_path / "demo_ratings.yaml"
    ratings_yaml.write_text(
        f"model_name_or_path: {tmp_path / 'text-model'}\ntrain_file: {vader / 'tweets.csv'}\n"
        f"label_column_name: rating\ntext_column_name: text\nstrategy: full\nmax_steps: 2\n{QUIET}"
    )
    image_yaml.write_text(
        f"model_name_or_path: {tmp_path / 'image-model'}\ntrain_dir: {digits / 'train'}\n"
        f"validation_dir: {digits / 'validation'}\nstrategy: feature_extraction\nmax_steps: 2\n{QUIET}"
    )
    text_yaml.write_text(
        f"model_name_or_path: {tmp_path / 'text-model'}\ntrain_file: {reviews / 'train.csv'}\n"
        f"validation_file: {reviews / 'validation.csv'}\nstrategy: full\nmax_steps: 2\n{QUIET}"
    )
    audio_yaml.write_text(
        f"model_name_or_path: {tmp_path / 'audio-model'}\n"
        f"train_dir: {voices / 'initial' / 'train'}\nvalidation_dir: {voices / 'initial' / 'validation'}\n"
        f"encoder_window_seconds: 1\nmax_length_seconds: 1\nstrategy: feature_extraction\nmax_steps: 2\n{QUIET}"
    )
    fetched = []

    def fetch_all(names):
        fetched.extend(names)
        return {"rotten-tomatoes": reviews, "mnist": digits, "gcin-voice": voices,
                "vader-sentiment": vader, "general-inquirer": inquirer}  # fmt: skip

    monkeypatch.setattr(demo, "fetch_all", fetch_all)
    rows = {
        "images": demo.Row("images: tiny", demo.image_classification, image_yaml, ("mnist",),
                           demo.show_images),
        "text": demo.Row("text: tiny", demo.sentiment, text_yaml, ("rotten-tomatoes",),
                         demo.show_text),
        "audio": demo.Row("audio: tiny", demo.audio_classification, audio_yaml, ("gcin-voice",),
                          demo.show_audio),
        "ratings": demo.Row("ratings: tiny", demo.sentiment, ratings_yaml, ("vader-sentiment",),
                            demo.show_ratings, demo.rating_scores),
        "tags": demo.Row("tags: tiny", demo.sentiment, tags_yaml, ("general-inquirer",),
                         demo.show_tags, demo.tag_scores),
    }  # fmt: skip
    monkeypatch.setattr(demo, "ROWS", rows)

    results = demo.main(["--output_root", str(tmp_path / "out")])
    out = capsys.readouterr().out

    assert fetched == [
        "mnist",
        "rotten-tomatoes",
        "gcin-voice",
        "vader-sentiment",
        "general-inquirer",
    ]
    for task in ("images: tiny", "text: tiny", "audio: tiny", "ratings: tiny", "tags: tiny"):
        assert set(results[task]) == {"pretrained", "random init"}
        for run in results[task].values():
            assert (run["output_dir"] / "model.safetensors").is_file()
        metric = {
            "ratings: tiny": r"Pearson r\s+-?\d\.\d{3}",
            "tags: tiny": r"micro-F1\s+\d\.\d{3}",
        }.get(task, r"accuracy\s+\d+\.\d%")
        assert re.search(rf"{re.escape(task)}\s+pretrained\s+{metric}", out)
    assert "vs predicting the mean: RMSE" in out  # the regression row's floor
    assert "same model and training from random weights" in out
    predictions = re.findall(
        r"^  (negative|positive) +\(\d\.\d\d\), truth (negative|positive)", out, re.M
    )
    assert len(predictions) == 4  # held-out reviews, labels by name through pipeline()
    assert len(re.findall(r"^  (red|green|blue): predicted (red|green|blue) ", out, re.M)) == 6
    assert len(re.findall(r"^  (low|mid|high): predicted (low|mid|high) ", out, re.M)) == 6
    # the rating model predicts a number in the data's units through plain pipeline()
    assert len(re.findall(r"^  predicted [+-]\d\.\d\d, people [+-]\d\.\d\d  ", out, re.M)) == 4
    # the tagger: each word's categories at their saved thresholds, through plain pipeline()
    assert len(re.findall(r"^  .+ predicted .+ truth (negative|positive)", out, re.M)) == 6

    # --tasks picks rows (and only their assets are fetched)
    fetched.clear()
    results = demo.main(["--output_root", str(tmp_path / "out2"), "--tasks", "audio",
                         "--no_baseline"])  # fmt: skip
    assert list(results) == ["audio: tiny"] and fetched == ["gcin-voice"]
    with pytest.raises(SystemExit):
        demo.main(["--tasks", "video"])
    assert (
        "--tasks video: choose from images, text, audio, ratings, tags" in capsys.readouterr().err
    )
