"""The cold first run, as a new user runs it: `hftl train image-classification --strategy
feature_extraction` with no other flags against a plain Trainer pipeline that freezes the
backbone, whole processes, and where hftl's seconds go.

    python scripts/cold_run.py                       # both image sizes, 3 repetitions, ~25 min
    python scripts/cold_run.py --sizes 48x40 --reps 1

A timm MobileNetV3-Small with random weights (TimmWrapper checkpoint), 480 images in 3 class
folders, 10 epochs; the images are either tiny (48x40 PNG) or photo-sized (400x300 JPEG, about
ImageNet's average). Both sides use the same batch size, learning rate and evaluation schedule
(the defaults `hftl train` resolves); the baseline holds out 10% for validation as hftl does, sets
`requires_grad=False` on everything but the head, preprocesses with `set_transform`, evaluates
every epoch and saves the model. "empty cache": hftl starts with an empty feature cache;
"reused": the cache of the previous run is there. Times are whole processes (`subprocess`, from
start to exit: imports included). The breakdown times hftl's stages by the moment each of its log
lines reaches stderr (one more run per size, empty cache); "imports" is `import hftl.cli` in a
fresh process, timed inside it.

Writes the "cold" section of docs/benchmarks.md (`--output`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "cold"


def prepare(work: Path, size: tuple[int, int] | None) -> None:
    import timm
    import torch
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    from hftl.testing import write_toy_image_folder

    torch.manual_seed(0)
    cfg = dict(timm.create_model("mobilenetv3_small_100", pretrained=False).pretrained_cfg)
    config = TimmWrapperConfig(architecture="mobilenetv3_small_100", pretrained_cfg=cfg)
    TimmWrapperForImageClassification(config).save_pretrained(work / "model")
    write_toy_image_folder(work / "images", per_class=160, seed=0, odd_modes=False, size=size)


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


# (stage, the log line that ends it); the stages run in this order
STAGES = [
    ("reading, checking and splitting the data", r"\] labels \("),
    ("loading the model and processor", r"\] augmentation "),
    ("extracting the features (the one forward pass)", r"\] strategy feature_extraction"),
    ("building the trainer", r"\] hftl parameter groups"),
    ("training the head (10 epochs, evaluated each), final evaluation, saving",
     r"\] validation accuracy"),
    ("the model card and its plots", r"\] model card written"),
]  # fmt: skip


def imports_seconds() -> float:
    code = "import time; t = time.perf_counter(); import hftl.cli; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def breakdown(command: list[str]) -> list[tuple[str, float]]:
    """Seconds per stage of one hftl run, from when its log lines arrive."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)  # fmt: skip
    seen: dict[int, float] = {}
    for line in process.stderr:
        for index, (_, pattern) in enumerate(STAGES):
            if index not in seen and re.search(pattern, line):
                seen[index] = time.perf_counter() - start
    process.wait()
    end = time.perf_counter() - start
    missing = [STAGES[i][0] for i in range(len(STAGES)) if i not in seen]
    if process.returncode or missing:
        raise SystemExit(f"breakdown: exit {process.returncode}; no log line for {missing}")
    imports = imports_seconds()
    stages, before = [("imports (`import hftl.cli`)", imports)], imports
    for index, (name, _) in enumerate(STAGES):
        stages.append((name, seen[index] - before))
        before = seen[index]
    stages.append(("exit (interpreter shutdown)", end - before))
    return stages


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def report(results: dict, command: str, hardware: str) -> str:
    lines = [
        f"<!-- {SECTION}: generated by scripts/cold_run.py; rerun it -->",
        "## The cold first run (feature extraction, whole processes)",
        "",
        f"- Command: `{command}`; {hardware}",
        "- " + " ".join(__doc__.split("\n\n")[2].split()),
        "",
        "| images | baseline (s) | hftl, empty cache (s) | speed-up | hftl, reused (s) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for size, result in results.items():
        runs = result["runs"]
        base = {r["rep"]: r["seconds"] for r in runs if r["side"] == "baseline"}
        cells = [f"{statistics.median(base.values()):.1f}"]
        for side in ("hftl, empty cache", "hftl, reused"):
            ours = [r for r in runs if r["side"] == side]
            ratios = [base[r["rep"]] / r["seconds"] for r in ours]
            cells += [f"{statistics.median(r['seconds'] for r in ours):.1f}",
                      f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"]  # fmt: skip
        lines.append(f"| 480 x {size} | " + " | ".join(cells) + " |")
    for size, result in results.items():
        stages = result["breakdown"]
        total = sum(seconds for _, seconds in stages)
        lines += ["", f"Where one cold hftl run's {total:.1f} s go ({size} images):", "",
                  "| stage | seconds | share |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {name} | {seconds:.2f} | {seconds / total:.0%} |" for name, seconds in stages]
    lines += ["", f"<!-- /{SECTION} -->"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["48x40", "400x300"],
                        help="image sizes, WIDTHxHEIGHT (48x40: PNGs as the tests write them)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--baseline", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:
        baseline(Path(args.baseline[0]), Path(args.baseline[1]))
        return 0
    from inference_benchmark import write_section

    from hftl.outputs import describe_hardware

    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            prepare(work, None if size == "48x40" else parse_size(size))
            runs = []
            for rep in range(args.reps):
                cache = work / f"features-{rep}"
                sides = [("baseline", [sys.executable, __file__, "--baseline", str(work),
                                       str(work / f"base-{rep}")]),
                         ("hftl, empty cache", hftl_command(work, work / f"cold-{rep}", cache)),
                         ("hftl, reused", hftl_command(work, work / f"warm-{rep}", cache))]  # fmt: skip
                for side, command in sides:
                    runs.append({"size": size, "side": side, "rep": rep,
                                 "seconds": timed(command)})  # fmt: skip
                    print(runs[-1], flush=True)
            stages = breakdown(hftl_command(work, work / "timed", work / "features-timed"))
            for name, seconds in stages:
                print(f"{size} {name}: {seconds:.2f} s", flush=True)
            results[size] = {"runs": runs, "breakdown": stages}
    command = "python scripts/cold_run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = report(results, command.strip(), describe_hardware())
    write_section(Path(args.output), section, SECTION)
    print(section)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
