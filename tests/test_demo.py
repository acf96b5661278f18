"""recipes/demo.py (the README's main command) end to end, on tiny stand-ins for the assets."""

import importlib
import re
from pathlib import Path

import pytest

from hftl.testing import (
    save_tiny_audio_checkpoint,
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
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
    save_tiny_text_checkpoint(tmp_path / "text-model", "bert")
    save_tiny_image_checkpoint(tmp_path / "image-model", "vit")
    save_tiny_audio_checkpoint(tmp_path / "audio-model", "whisper")
    image_yaml, text_yaml = tmp_path / "demo_image.yaml", tmp_path / "demo_text.yaml"
    audio_yaml = tmp_path / "demo_audio.yaml"
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
        return {"rotten-tomatoes": reviews, "mnist": digits, "gcin-voice": voices}

    monkeypatch.setattr(demo, "fetch_all", fetch_all)
    rows = {
        "images": demo.Row("images: tiny", demo.image_classification, image_yaml, ("mnist",),
                           demo.show_images),
        "text": demo.Row("text: tiny", demo.sentiment, text_yaml, ("rotten-tomatoes",),
                         demo.show_text),
        "audio": demo.Row("audio: tiny", demo.audio_classification, audio_yaml, ("gcin-voice",),
                          demo.show_audio),
    }  # fmt: skip
    monkeypatch.setattr(demo, "ROWS", rows)

    results = demo.main(["--output_root", str(tmp_path / "out")])
    out = capsys.readouterr().out

    assert fetched == ["mnist", "rotten-tomatoes", "gcin-voice"]
    for task in ("images: tiny", "text: tiny", "audio: tiny"):
        assert set(results[task]) == {"pretrained", "random init"}
        for run in results[task].values():
            assert (run["output_dir"] / "model.safetensors").is_file()
        assert re.search(rf"{re.escape(task)}\s+pretrained\s+\d+\.\d%", out)
    assert "same model and training from random weights" in out
    predictions = re.findall(
        r"^  (negative|positive) +\(\d\.\d\d\), truth (negative|positive)", out, re.M
    )
    assert len(predictions) == 4  # held-out reviews, labels by name through pipeline()
    assert len(re.findall(r"^  (red|green|blue): predicted (red|green|blue) ", out, re.M)) == 6
    assert len(re.findall(r"^  (low|mid|high): predicted (low|mid|high) ", out, re.M)) == 6

    # --tasks picks rows (and only their assets are fetched)
    fetched.clear()
    results = demo.main(["--output_root", str(tmp_path / "out2"), "--tasks", "audio",
                         "--no_baseline"])  # fmt: skip
    assert list(results) == ["audio: tiny"] and fetched == ["gcin-voice"]
    with pytest.raises(SystemExit):
        demo.main(["--tasks", "video"])
    assert "--tasks video: choose from images, text, audio" in capsys.readouterr().err
