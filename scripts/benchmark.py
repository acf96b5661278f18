"""hftl against the plain Hugging Face example pipeline: same model, data and hyperparameters.

    python scripts/benchmark.py                       # offline assets, 3 repetitions -> docs/benchmarks.md
    python scripts/benchmark.py --quick               # tiny random models and toy data, 1 repetition
    python scripts/benchmark.py --cases image_fe --reps 5

The baseline is what a user would otherwise write, in the style of run_image_classification.py /
run_glue.py: plain ``Trainer``, preprocessing with ``set_transform`` (images, augmented in
training as that script does) or ``map`` with ``padding="max_length"`` (text, run_glue's
default), ``requires_grad=False`` for frozen parts and Trainer's default optimizer. hftl runs its recipes with the same hyperparameters, as users run
them ("hftl defaults") and, for full fine-tuning, also with its speed defaults off ("same
settings": no channels-last; text padded to max length in random order, read through BERT's own
[CLS] head as the baseline does).

Every run is a fresh process (so peak memory is that run's), the sides take turns going first,
and the report gives hftl / baseline ratios (min, median, max over repetitions) of training throughput,
wall time to the end of training, peak memory, and the difference in final accuracy. For cached
feature extraction it also gives the training cost divided by one plain forward pass over the
same data (the floor for that strategy). Timings include data preparation, model loading and,
for hftl's feature extraction, computing the features.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Per case: task, strategy, epochs, learning rate, and the hftl variants run against the one
# baseline: "defaults" is the recipe as a user runs it; "same" turns hftl's speed defaults off
# so that the pipeline itself is compared at the baseline's settings.
DEFAULTS = {"defaults": []}
CASES = {
    "image_fe": {"task": "image", "strategy": "feature_extraction", "epochs": 10, "lr": 5e-3,
                 "variants": {"defaults": [], "uncached": ["--feature_cache", "false"],
                              "views": ["--augmentation", "true"]}},
    "image_partial": {"task": "image", "strategy": "partial", "epochs": 2, "lr": 1e-3, "blocks": 2,
                      "variants": DEFAULTS},
    "image_full": {"task": "image", "strategy": "full", "epochs": 2, "lr": 1e-3,
                   "variants": {"same": ["--channels_last", "false"], "defaults": []}},
    "text_full": {"task": "text", "strategy": "full", "epochs": 2, "lr": 1e-4,
                  "variants": {"same": ["--pad_to_max_length", "true", "--train_sampling_strategy", "random",
                                        "--pooling", "cls"],
                               "defaults": []}},
}  # fmt: skip
VARIANT_NAMES = {
    "defaults": "hftl defaults",
    "same": "same settings as the baseline",
    "uncached": "feature cache off (backbone in the loop)",
    "views": "augmented: 5 cached random views",
}
SIZES = {  # (training examples, batch size); evaluation on the whole validation split
    "image": (500, 32),  # MNIST validation: 500 digits
    "text": (1000, 16),  # Rotten Tomatoes validation: 1,280 reviews
}
QUICK_SIZES = {"image": (96, 16), "text": (160, 16)}
MAX_SEQ_LENGTH = 128


# --------------------------------------------------------------------------------------------
# Data and models: the offline assets, or tiny stand-ins (--quick)
# --------------------------------------------------------------------------------------------


def prepare(workdir: Path, quick: bool, image_size: int) -> dict:
    """Paths both sides use: the image model and folders, the text model and CSVs."""
    if quick:
        from hftl.testing import (
            save_tiny_image_checkpoint,
            save_tiny_text_checkpoint,
            write_toy_image_folder,
            write_toy_reviews_csv,
        )

        save_tiny_image_checkpoint(workdir / "image-model", "timm-resnet", num_labels=3)
        write_toy_image_folder(workdir / "train", per_class=48, seed=0)
        write_toy_image_folder(workdir / "validation", per_class=24, seed=1)
        save_tiny_text_checkpoint(workdir / "text-model", "bert")
        write_toy_reviews_csv(workdir / "train.csv", 200, seed=0)
        write_toy_reviews_csv(workdir / "validation.csv", 80, seed=1)
        return {
            "image_model": str(workdir / "image-model"),
            "train_dir": str(workdir / "train"),
            "validation_dir": str(workdir / "validation"),
            "text_model": str(workdir / "text-model"),
            "train_file": str(workdir / "train.csv"),
            "validation_file": str(workdir / "validation.csv"),
            "max_seq_length": 48,
        }  # fmt: skip (the tiny BERT has 64 positions)
    from hftl.assets import fetch

    model = fetch("efficientnet-lite0")
    target = workdir / f"efficientnet-lite0-{image_size}px"
    shutil.copytree(model, target)
    config = json.loads((target / "config.json").read_text())
    config["pretrained_cfg"]["input_size"] = config["pretrained_cfg"]["test_input_size"] = [
        3,
        image_size,
        image_size,
    ]
    (target / "config.json").write_text(json.dumps(config, indent=2))
    mnist, reviews = fetch("mnist"), fetch("rotten-tomatoes")
    return {"image_model": str(target), "train_dir": str(mnist / "train"), "validation_dir": str(mnist / "validation"),
            "text_model": str(fetch("minilm")), "train_file": str(reviews / "train.csv"),
            "validation_file": str(reviews / "validation.csv"), "max_seq_length": MAX_SEQ_LENGTH}  # fmt: skip


# --------------------------------------------------------------------------------------------
# One run (a fresh process): --worker SIDE CASE
# --------------------------------------------------------------------------------------------


def timer():
    """A TrainerCallback that notes when training began and ended (the feature cache, if any,
    ran before: TransferTrainer.build records its seconds)."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks["train_start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.marks["train_end"] = time.perf_counter()

    return Timer()


def run_hftl(
    case: dict, paths: dict, sizes: tuple, out: Path, variant: str, extra=(), callbacks=()
) -> dict:
    """One hftl run (the recipe in this process); ``extra`` flags go after the case's, and
    ``callbacks`` (TrainerCallbacks) watch it beside the timer."""
    from hftl.run import run_task
    from hftl.testing import load_script

    train_n, batch = sizes
    recipe_name = "image_classification" if case["task"] == "image" else "sentiment"
    recipe = load_script(ROOT / "recipes" / f"{recipe_name}.py")
    if case["task"] == "image":
        data = ["--model_name_or_path", paths["image_model"], "--train_dir", paths["train_dir"],
                "--validation_dir", paths["validation_dir"]]  # fmt: skip
    else:
        data = ["--model_name_or_path", paths["text_model"], "--train_file", paths["train_file"],
                "--validation_file", paths["validation_file"], "--max_seq_length", str(paths["max_seq_length"])]  # fmt: skip
    strategy = ["--strategy", case["strategy"], *case["variants"][variant]]
    if case["strategy"] == "partial":
        strategy += ["--num_trainable_layers", str(case["blocks"])]
    clock = timer()
    start = time.perf_counter()
    report, trainer = run_task(recipe.TASK, [
        *data, *strategy, "--learning_rate", str(case["lr"]), "--num_train_epochs", str(case["epochs"]),
        "--max_train_samples", str(train_n),
        "--per_device_train_batch_size", str(batch), "--per_device_eval_batch_size", "64",
        "--output_dir", str(out / "model"), "--overwrite_output_dir", "true", "--save_strategy", "no", "--logging_strategy", "no",
        "--feature_cache_dir", str(out / "features"),  # cold: every run computes its features
        "--report_to", "none", "--disable_tqdm", "true", "--seed", "0", *extra,
    ], prog=f"{recipe_name}.py", callbacks=[clock, *callbacks])  # fmt: skip
    marks = clock.marks
    cache = trainer.feature_cache or {}
    # hftl extracts the evaluation set's features before training too; the baseline evaluates
    # after training, so neither side counts its evaluation.
    eval_extraction = cache.get("seconds", 0.0) - cache.get("train_seconds", 0.0)
    result = {
        "wall_s": marks["train_end"] - start - eval_extraction,
        # the training loop and, before it, the training set's feature extraction
        "train_s": marks["train_end"] - marks["train_start"] + cache.get("train_seconds", 0.0),
        "examples": len(trainer.train_dataset) * case["epochs"],
        "accuracy": report["accuracy"],
        "feature_cache": bool(cache.get("used")),
    }
    if cache.get("used"):  # the floor again, warm (kernels already built), as hftl extracted
        from hftl.fast import autocast_dtype
        from hftl.feature_cache import unwrap

        result["warm_floor_s"] = one_forward_pass(
            unwrap(trainer.model), trainer.channels_last, paths, train_n, batch,
            autocast=autocast_dtype(trainer.args), num_workers=trainer.args.dataloader_num_workers,
        )  # fmt: skip
    return result


def run_floor(case: dict, paths: dict, sizes: tuple, out: Path) -> dict:
    """One plain forward pass over the training images in a fresh process (cold kernels, as
    hftl's own extraction runs), with the model in the memory layout hftl gives it."""
    import torch
    from transformers import AutoModelForImageClassification

    from hftl.fast import wants_channels_last

    start = time.perf_counter()
    model = AutoModelForImageClassification.from_pretrained(paths["image_model"]).eval()
    channels_last = wants_channels_last(model, None)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    seconds = one_forward_pass(model, channels_last, paths, *sizes)
    return {"wall_s": time.perf_counter() - start, "train_s": seconds, "floor_s": seconds,
            "examples": sizes[0], "accuracy": float("nan")}  # fmt: skip


def one_forward_pass(
    model, channels_last: bool, paths, train_n, batch, autocast=None, num_workers=0
) -> float:
    """Seconds for one plain forward pass of ``model`` over the training images (eval mode;
    under ``autocast``, a dtype, if given; ``num_workers`` DataLoader workers)."""
    import contextlib

    import torch
    from datasets import load_dataset
    from transformers import AutoImageProcessor

    from hftl.tasks.image_classification import collate_images

    model.eval()
    processor = AutoImageProcessor.from_pretrained(paths["image_model"])
    data = load_dataset("imagefolder", data_dir=paths["train_dir"], split="train")
    data = data.shuffle(seed=0).select(range(min(train_n, len(data))))
    data.set_transform(lambda b: {"pixel_values": list(processor([i.convert("RGB") for i in b["image"]], return_tensors="pt")["pixel_values"]), "labels": b["label"]})  # fmt: skip
    loader = torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate_images,
                                         num_workers=num_workers)  # fmt: skip
    precision = (torch.autocast(model.device.type, dtype=autocast) if autocast is not None
                 else contextlib.nullcontext())  # fmt: skip
    start = time.perf_counter()
    with torch.inference_mode(), precision:
        for inputs in loader:
            pixels = inputs["pixel_values"].to(model.device)
            if channels_last:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            model(pixel_values=pixels)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_baseline(
    case: dict, paths: dict, sizes: tuple, out: Path, training=None, callbacks=()
) -> dict:
    """The example-script way: plain Trainer, set_transform / padding to max length, requires_grad.
    ``training``: TrainingArguments values beside the case's (bf16, max_steps, ...);
    ``callbacks``: TrainerCallbacks beside the timer."""
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from hftl.layers import build_layer_map

    train_n, batch = sizes
    set_seed(0)
    start = time.perf_counter()
    if case["task"] == "image":
        raw = load_dataset("imagefolder", data_files={"train": f"{paths['train_dir']}/**", "validation": f"{paths['validation_dir']}/**"})  # fmt: skip
        labels = raw["train"].features["label"].names
        processor = AutoImageProcessor.from_pretrained(paths["image_model"])

        def transform(batch_):
            images = [image.convert("RGB") for image in batch_["image"]]
            return {
                "pixel_values": processor(images, return_tensors="pt")["pixel_values"],
                "labels": batch_["label"],
            }

        # run_image_classification.py augments training images (random resized crop + flip);
        # for a timm checkpoint the processor has timm's own training transform
        augment = getattr(processor, "train_transforms", None) or example_train_transform(processor)

        def train_transform(batch_):
            images = [augment(image.convert("RGB")) for image in batch_["image"]]
            return {"pixel_values": images, "labels": batch_["label"]}

        train = raw["train"].shuffle(seed=0).select(range(min(train_n, len(raw["train"]))))
        evaluation = raw["validation"]
        train.set_transform(train_transform)
        evaluation.set_transform(transform)
        model = AutoModelForImageClassification.from_pretrained(
            paths["image_model"], num_labels=len(labels), ignore_mismatched_sizes=True,
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        )  # fmt: skip

        def collate(examples):
            import torch

            return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
                    "labels": torch.tensor([e["labels"] for e in examples])}  # fmt: skip
    else:
        raw = load_dataset(
            "csv", data_files={"train": paths["train_file"], "validation": paths["validation_file"]}
        )
        labels = sorted(set(raw["train"]["label"]))
        tokenizer = AutoTokenizer.from_pretrained(paths["text_model"])

        def tokenize(batch_):
            encoded = tokenizer(
                batch_["text"],
                padding="max_length",
                max_length=paths["max_seq_length"],
                truncation=True,
            )
            encoded["labels"] = [labels.index(label) for label in batch_["label"]]
            return encoded

        train = raw["train"].shuffle(seed=0).select(range(min(train_n, len(raw["train"]))))
        evaluation = raw["validation"]
        train = train.map(tokenize, batched=True, remove_columns=train.column_names)
        evaluation = evaluation.map(tokenize, batched=True, remove_columns=evaluation.column_names)
        model = AutoModelForSequenceClassification.from_pretrained(
            paths["text_model"], num_labels=len(labels), ignore_mismatched_sizes=True,
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        )  # fmt: skip
        collate = default_data_collator
    # Freeze the same parameters hftl freezes (the baseline's own way: requires_grad=False).
    layer_map = build_layer_map(model)
    lowest = {"feature_extraction": layer_map.head_depth, "full": 0,
              "partial": layer_map.num_blocks + 1 - case.get("blocks", 0)}[case["strategy"]]  # fmt: skip
    for name, param in model.named_parameters():
        param.requires_grad_(layer_map.depths[name] >= lowest)

    def accuracy(prediction):
        return {
            "accuracy": float(
                (np.argmax(prediction.predictions, -1) == prediction.label_ids).mean()
            )
        }

    args = TrainingArguments(
        str(out / "model"), learning_rate=case["lr"], num_train_epochs=case["epochs"],
        per_device_train_batch_size=batch, per_device_eval_batch_size=64, save_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, seed=0, remove_unused_columns=False,
        **(training or {}),
    )  # fmt: skip
    clock = timer()
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=evaluation, data_collator=collate,
                      compute_metrics=accuracy, callbacks=[clock, *callbacks])  # fmt: skip
    trainer.train()
    end = time.perf_counter()
    metrics = trainer.evaluate()
    return {
        "wall_s": end - start,
        "train_s": clock.marks["train_end"] - clock.marks["train_start"],
        "examples": len(train) * case["epochs"],
        "accuracy": metrics["eval_accuracy"],
    }


def example_train_transform(processor):
    """run_image_classification.py's training transform for an image processor without one of
    its own: a random resized crop to the processor's size, a flip, then its normalisation."""
    from torchvision.transforms import (
        Compose,
        Normalize,
        RandomHorizontalFlip,
        RandomResizedCrop,
        ToTensor,
    )

    size = processor.size
    size = size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"])
    return Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(),
                    Normalize(mean=processor.image_mean, std=processor.image_std)])  # fmt: skip


def worker(side: str, case_name: str, quick: bool, paths_file: str, out: str) -> None:
    import torch

    paths = json.loads(Path(paths_file).read_text())
    case = CASES[case_name]
    sizes = (QUICK_SIZES if quick else SIZES)[case["task"]]
    workdir = Path(tempfile.mkdtemp(prefix=f"hftl-bench-{side}-"))
    try:
        if side == "baseline":
            result = run_baseline(case, paths, sizes, workdir)
        elif side == "floor":
            result = run_floor(case, paths, sizes, workdir)
        else:
            result = run_hftl(case, paths, sizes, workdir, side.split(":", 1)[1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["samples_per_s"] = result["examples"] / result["train_s"]
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    Path(out).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# The driver: alternate the sides, repeat, write the report
# --------------------------------------------------------------------------------------------


def other_sections(output: Path) -> str:
    """What other scripts generate into the same file (the sections of
    scripts/inference_benchmark.py and scripts/extraction_scaling.py, between their markers), kept
    when this report is rewritten."""
    import re

    text = output.read_text() if output.exists() else ""
    found = re.search(r"<!-- \w+: generated by scripts/", text)
    return "\n" + text[found.start() :] if found else ""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny models and toy data, 1 repetition"
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--report_only", action="store_true", help="rewrite the report from its JSON"
    )
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.quick, args.paths, args.result)
        return {}
    output = Path(args.output)
    if args.report_only:
        saved = json.loads(output.with_suffix(".json").read_text())
        output.write_text(report(saved) + other_sections(output))
        return saved
    reps = 1 if args.quick else args.reps
    workdir = Path(tempfile.mkdtemp(prefix="hftl-bench-"))
    paths_file = workdir / "paths.json"
    paths_file.write_text(json.dumps(prepare(workdir, args.quick, args.image_size)))
    runs = []
    started = time.perf_counter()
    for rep in range(reps):
        for case in args.cases:
            sides = ["baseline", *(f"hftl:{v}" for v in CASES[case]["variants"])]
            if CASES[case]["strategy"] == "feature_extraction":
                sides.append("floor")
            shift = rep % len(sides)  # rotate who goes first
            for side in sides[shift:] + sides[:shift]:
                result_file = workdir / f"{case}-{side.replace(':', '-')}-{rep}.json"
                command = [sys.executable, __file__, "--worker", side, case, "--paths", str(paths_file),
                           "--result", str(result_file)] + (["--quick"] if args.quick else [])  # fmt: skip
                completed = subprocess.run(command, capture_output=True, text=True)
                if completed.returncode != 0:
                    sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-5000:])
                    raise SystemExit(
                        f"benchmark: {side} {case} failed (exit {completed.returncode})"
                    )
                run = {
                    "case": case,
                    "side": side,
                    "rep": rep,
                    **json.loads(result_file.read_text()),
                }
                runs.append(run)
                print(
                    json.dumps(
                        {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}
                    ),
                    flush=True,
                )
    shutil.rmtree(workdir, ignore_errors=True)
    saved = {"meta": meta(args, time.perf_counter() - started), "runs": runs}
    previous = output.with_suffix(".json")
    if set(args.cases) != set(CASES) and previous.exists():  # replace these cases' runs only
        old = json.loads(previous.read_text())
        if old["meta"]["quick"] == args.quick:
            saved["runs"] = [r for r in old["runs"] if r["case"] not in args.cases] + runs
            saved["meta"]["command"] = (
                f"{old['meta']['command']}`, then `{saved['meta']['command']}"
            )
            saved["meta"]["wall_minutes"] = round(
                old["meta"]["wall_minutes"] + saved["meta"]["wall_minutes"], 1
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(saved, indent=2))
    output.write_text(report(saved) + other_sections(output))
    print(f"wrote {output} and {output.with_suffix('.json')}")
    return saved


def meta(args, seconds: float) -> dict:
    import torch
    import transformers

    from hftl.outputs import describe_hardware

    return {
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "hardware": describe_hardware(),
        "software": f"torch {torch.__version__}, transformers {transformers.__version__}",
        "quick": args.quick,
        "image_size": args.image_size,
        "sizes": QUICK_SIZES if args.quick else SIZES,
        "wall_minutes": round(seconds / 60, 1),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def paired(runs: list[dict], case: str, variant: str) -> list[tuple[dict, dict]]:
    """(hftl:variant run, baseline run) of each repetition of ``case`` that has both."""
    out = []
    for rep in sorted({r["rep"] for r in runs if r["case"] == case}):
        sides = {r["side"]: r for r in runs if r["case"] == case and r["rep"] == rep}
        if {f"hftl:{variant}", "baseline"} <= set(sides):
            out.append((sides[f"hftl:{variant}"], sides["baseline"]))
    return out


def throughput_ratios(runs: list[dict], case: str, variant: str) -> list[float]:
    return [h["samples_per_s"] / b["samples_per_s"] for h, b in paired(runs, case, variant)]


def cold_floor_ratios(runs: list[dict], case: str) -> list[float]:
    """Cached training time / the fresh-process forward pass of the same repetition."""
    floors = {r["rep"]: r["floor_s"] for r in runs if r["case"] == case and r["side"] == "floor"}
    return [r["train_s"] / floors[r["rep"]] for r in runs
            if r["case"] == case and r["side"] == "hftl:defaults" and r["rep"] in floors]  # fmt: skip


def targets(runs: list[dict]) -> list[str]:
    """Issue 6's targets, each checked on the median and on every repetition."""
    fe = {(r["side"], r["rep"]): r for r in runs if r["case"] == "image_fe"}
    accuracy_gap = [100 * abs(r["accuracy"] - fe[("hftl:uncached", rep)]["accuracy"])
                    for (side, rep), r in fe.items() if side == "hftl:defaults" and ("hftl:uncached", rep) in fe]  # fmt: skip
    floor = cold_floor_ratios(runs, "image_fe")
    checks = [
        ("cached feature extraction >= 8x the baseline's throughput", throughput_ratios(runs, "image_fe", "defaults"), 8.0, ">="),
        ("cached feature extraction accuracy within 1 point of the uncached path (points)", accuracy_gap, 1.0, "<="),
        ("cached feature extraction within 1.3x of the one-forward-pass floor (fresh process)", floor, 1.3, "<="),
        ("full fine-tuning, same settings, >= 0.97x (image)", throughput_ratios(runs, "image_full", "same"), 0.97, ">="),
        ("full fine-tuning, same settings, >= 0.97x (text)", throughput_ratios(runs, "text_full", "same"), 0.97, ">="),
        ("full fine-tuning faster with hftl's defaults (image)", throughput_ratios(runs, "image_full", "defaults"), 1.0, ">"),
        ("text with per-batch padding + length grouping >= 2x", throughput_ratios(runs, "text_full", "defaults"), 2.0, ">="),
    ]  # fmt: skip
    compare = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b}
    lines = ["", "## Targets (issue 6), checked on these runs", "",
             "| target | median (min-max) | median meets it | every repetition meets it |", "|---|---|---|---|"]  # fmt: skip
    for name, values, bound, op in checks:
        if not values:
            continue
        ok = compare[op]
        lines.append(
            f"| {name} | {spread(values)} | {'yes' if ok(statistics.median(values), bound) else 'NO'} | "
            f"{'yes' if all(ok(v, bound) for v in values) else 'NO'} |"
        )
    lines += ["", "NO in the last column: at least one repetition fell short. The same-settings rows do "
              "the same work on both sides, so their spread is this machine's run-to-run noise."]  # fmt: skip
    return lines


def report(saved: dict) -> str:
    runs, info = saved["runs"], saved["meta"]
    lines = [
        "# Benchmarks: hftl / the plain Hugging Face example pipeline",
        "",
        "Generated by `scripts/benchmark.py`; do not edit by hand, rerun it.",
        "",
        f"- Command: `{info['command']}`",
        f"- Date: {info['date']}; hardware: {info['hardware']}; {info['software']}",
        f"- Sizes (training examples, batch): {info['sizes']}; image size {info['image_size']} px; "
        f"total {info['wall_minutes']} min",
        "- Ratios are hftl / baseline per repetition, as median (min-max); each run is a fresh "
        "process and the sides take turns going first. Throughput = training examples x epochs / "
        "seconds of the training loop, timed by a TrainerCallback (on_train_begin to on_train_end) "
        "on both sides, plus hftl's extraction of the training set's features, which runs before "
        "its Trainer. Wall time (to the end of training) also includes data preparation and model "
        "loading, not hftl's extraction of the evaluation features (the baseline's evaluation "
        "comes after training). Accuracy on the "
        "evaluation split.",
        "- The baseline augments training images (timm's training transform for this timm "
        "checkpoint), as run_image_classification.py does. *hftl defaults* is the recipe as users "
        "run it, with no flags: images are augmented where the backbone trains and not with a "
        "frozen one (feature extraction caches each image's features once). *same settings as "
        "the baseline* turns hftl's speed defaults off (image: `--channels_last false`; text: "
        "`--pad_to_max_length true --train_sampling_strategy random`) and reads the text the "
        "baseline's way (`--pooling cls`: BERT's own head on [CLS]; hftl's default for "
        "all-MiniLM-L6-v2 is the mean of the tokens, which it was trained for); *feature cache off* runs the "
        "frozen backbone every step, on the same unaugmented images as the cached default, in "
        "eval mode as hftl always does (the baseline's frozen BatchNorm layers keep updating "
        "their statistics in train mode); *augmented: 5 cached random views* is "
        "`--augmentation true` with a frozen backbone: five augmented views of each image are "
        "cached and epoch e trains on view e mod 5.",
        "- Why these defaults, knob by knob: [speed_defaults.md](speed_defaults.md).",
        "",
        "| case | hftl variant | epochs | throughput ratio | wall-time ratio | peak-memory ratio | accuracy hftl - baseline (points) | hftl accuracy | hftl samples/s | baseline samples/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    floor_line = None
    for case, spec in CASES.items():
        for variant in spec["variants"]:
            pairs = paired(runs, case, variant)
            if not pairs:
                continue
            throughput = [h["samples_per_s"] / b["samples_per_s"] for h, b in pairs]
            wall = [h["wall_s"] / b["wall_s"] for h, b in pairs]
            memory = [h["peak_rss_mib"] / b["peak_rss_mib"] for h, b in pairs]
            accuracy = [100 * (h["accuracy"] - b["accuracy"]) for h, b in pairs]
            lines.append(
                f"| {case} | {VARIANT_NAMES[variant]} | {spec['epochs']} | {spread(throughput)} | "
                f"{spread(wall)} | {spread(memory)} | {spread(accuracy, '{:+.1f}')} | "
                f"{100 * statistics.median(h['accuracy'] for h, _ in pairs):.1f}% | "
                f"{statistics.median(h['samples_per_s'] for h, _ in pairs):.1f} | "
                f"{statistics.median(b['samples_per_s'] for _, b in pairs):.1f} |"
            )
            cold = cold_floor_ratios(runs, case) if variant == "defaults" else []
            warm = [h["train_s"] / h["warm_floor_s"] for h, _ in pairs if h.get("warm_floor_s")]
            if cold:
                floor_line = (
                    f"Cached feature extraction ({spec['epochs']} epochs): training cost / one plain "
                    f"forward pass of the same model (same memory layout) over the same training "
                    f"data in a fresh process = {spread(cold)}"
                    + (
                        f"; / the same pass repeated in hftl's process, kernels warm = {spread(warm)}"
                        if warm
                        else ""
                    )
                    + "."
                )
    if floor_line:
        lines += ["", floor_line]
    lines += targets(runs)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
