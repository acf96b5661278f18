"""The cold first run, as a new user runs it: `hftl train image-classification --strategy
feature_extraction` with no other flags against a plain Trainer pipeline that freezes the
backbone, whole processes, and where hftl's seconds go.

    python scripts/cold_run.py                    # 3 repetitions, about 10 minutes on 2 cores
    python scripts/cold_run.py --reps 1 --profile # and a cProfile breakdown of one hftl run

A timm MobileNetV3-Small with random weights (TimmWrapper checkpoint), 480 toy images in 3 class
folders, 10 epochs. Both sides use the same batch size, learning rate and evaluation schedule (the
defaults `hftl train` resolves); the baseline holds out 10% for validation as hftl does, sets
`requires_grad=False` on everything but the head, preprocesses with `set_transform`, evaluates
every epoch and saves the model. "empty cache": hftl starts with an empty feature cache;
"reused": the cache of the previous run is there. Times are whole processes (`subprocess`, from
start to exit: imports included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "cold"


def prepare(work: Path) -> None:
    import timm
    import torch
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    from hftl.testing import write_toy_image_folder

    torch.manual_seed(0)
    cfg = dict(timm.create_model("mobilenetv3_small_100", pretrained=False).pretrained_cfg)
    config = TimmWrapperConfig(architecture="mobilenetv3_small_100", pretrained_cfg=cfg)
    TimmWrapperForImageClassification(config).save_pretrained(work / "model")
    write_toy_image_folder(work / "images", per_class=160, seed=0, odd_modes=False)


def hftl_command(work: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "hftl", "train", "image-classification",
            "--model_name_or_path", str(work / "model"), "--train_dir", str(work / "images"),
            "--strategy", "feature_extraction", "--num_train_epochs", "10",
            "--output_dir", str(out), "--feature_cache_dir", str(cache), "--report_to", "none"]  # fmt: skip


def baseline(work: Path, out: Path) -> None:
    """The plain pipeline (runs in its own process)."""
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        Trainer,
        TrainingArguments,
    )

    from hftl.run import parse_run_config

    resolved = parse_run_config("image-classification", hftl_command(work, out, out)[5:])[3]
    data = load_dataset("imagefolder", data_dir=str(work / "images"))["train"]
    split = data.train_test_split(test_size=0.1, seed=0, stratify_by_column="label")
    names = data.features["label"].names
    processor = AutoImageProcessor.from_pretrained(work / "model")

    def transform(batch):
        images = [image.convert("RGB") for image in batch["image"]]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"],
                "labels": batch["label"]}  # fmt: skip

    model = AutoModelForImageClassification.from_pretrained(
        work / "model", num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True,
    )  # fmt: skip
    classifier = model.timm_model.get_classifier()
    head = {id(p) for p in classifier.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in head

    def accuracy(prediction):
        return {
            "accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))
        }

    args = TrainingArguments(
        str(out), num_train_epochs=10, learning_rate=resolved.learning_rate,
        per_device_train_batch_size=resolved.per_device_train_batch_size,
        per_device_eval_batch_size=resolved.per_device_eval_batch_size,
        eval_strategy=resolved.eval_strategy, save_strategy="no", report_to="none",
        remove_unused_columns=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model, args, train_dataset=split["train"].with_transform(transform),
                      eval_dataset=split["test"].with_transform(transform),
                      compute_metrics=accuracy)  # fmt: skip
    trainer.train()
    trainer.evaluate()
    trainer.save_model()


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"{' '.join(command[:6])} ...: exit {done.returncode}\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print hftl's breakdown")
    parser.add_argument("--baseline", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:
        baseline(Path(args.baseline[0]), Path(args.baseline[1]))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        prepare(work)
        runs = []
        for rep in range(args.reps):
            cache = work / f"features-{rep}"
            sides = [("baseline", [sys.executable, __file__, "--baseline", str(work),
                                   str(work / f"base-{rep}")]),
                     ("hftl, empty cache", hftl_command(work, work / f"cold-{rep}", cache)),
                     ("hftl, reused", hftl_command(work, work / f"warm-{rep}", cache))]  # fmt: skip
            for side, command in sides:
                runs.append({"side": side, "rep": rep, "seconds": timed(command)})
                print(runs[-1], flush=True)
        if args.profile:
            profile = work / "hftl.prof"
            timed([sys.executable, "-m", "cProfile", "-o", str(profile),
                   *hftl_command(work, work / "profiled", work / "features-profiled")[1:]])  # fmt: skip
            import pstats

            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(45)
    base = {r["rep"]: r["seconds"] for r in runs if r["side"] == "baseline"}
    for side in ("hftl, empty cache", "hftl, reused"):
        ratios = [base[r["rep"]] / r["seconds"] for r in runs if r["side"] == side]
        print(f"{side}: {statistics.median(ratios):.2f}x faster than the baseline "
              f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
