"""Class weights on real imbalanced data (docs/class_weights_study.md).

One class of a real dataset is kept at 10% of the others in the training data (a seeded subsample,
the same for every run); the validation data keeps its natural balance. The same run then trains
without weights, with ``--class_weights inverse`` (N / (classes x n_class)) and with
``--class_weights effective`` (the effective number of samples, beta 0.999), over several seeds,
and the study reports macro-F1, accuracy, and the rare class's recall and precision.

    python scripts/class_weights_study.py                 # text and images, 3 seeds
    python scripts/class_weights_study.py --seeds 0       # one seed
    python scripts/class_weights_study.py --tasks images  # one task

Both tasks train a new head on frozen features (``strategy: feature_extraction``), which hftl
computes once and reuses across the runs of a task (one feature cache for the study), so the runs
differ in the loss's weights and the seed alone. The seed is the data order's (``--data_seed``):
the new head starts from the same weights in every run (``--seed 0``), because the feature
cache's key covers the whole model, the new head included, so another head would extract again.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from transfer_study import load_recipe, quiet_run

from hftl.outputs import describe_hardware

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "none": [],
    "inverse": ["--class_weights", "inverse"],
    "effective": ["--class_weights", "effective"],
}
TASKS = {
    "text": {
        "title": "MiniLM (frozen, mean pooling) on Rotten Tomatoes: 'rotten' kept at 10%",
        "recipe": "sentiment",
        "model": "hftl:minilm",
        "asset": "rotten-tomatoes",
        "rare": "rotten",
        "per_class": 1000,
        "flags": ["--max_seq_length", "64", "--learning_rate", "5e-3", "--num_train_epochs", "10",
                  "--per_device_train_batch_size", "32"],
    },
    "images": {
        "title": "EfficientNet-Lite0 (frozen, 224 px) on MNIST: digit 3 kept at 10%",
        "recipe": "image_classification",
        "model": "hftl:efficientnet-lite0",
        "asset": "mnist",
        "rare": "3",
        "per_class": 200,
        "flags": ["--learning_rate", "5e-3", "--num_train_epochs", "10",
                  "--per_device_train_batch_size", "32", "--augmentation", "false"],
    },
}  # fmt: skip


def text_data(asset: Path, workdir: Path, task: dict) -> list[str]:
    """``per_class`` reviews of the common class and a tenth of that of the rare one."""
    with open(asset / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = random.Random(0)
    rng.shuffle(rows)
    kept = []
    for label in sorted({r["label"] for r in rows}):
        count = task["per_class"] // 10 if label == task["rare"] else task["per_class"]
        kept += [r for r in rows if r["label"] == label][:count]
    rng.shuffle(kept)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(kept)
    return ["--train_file", str(path), "--validation_file", str(asset / "validation.csv")]


def image_data(asset: Path, workdir: Path, task: dict) -> list[str]:
    """Class folders of ``per_class`` digits each, a tenth of that for the rare digit."""
    rng = random.Random(0)
    for folder in sorted((asset / "train").iterdir()):
        files = sorted(folder.iterdir())
        rng.shuffle(files)
        count = task["per_class"] // 10 if folder.name == task["rare"] else task["per_class"]
        target = workdir / "train" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for file in files[:count]:
            shutil.copy(file, target / file.name)
    return ["--train_dir", str(workdir / "train"), "--validation_dir", str(asset / "validation")]


DATA = {"text": text_data, "images": image_data}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="text,images")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default=str(ROOT / "docs" / "class_weights_study.md"))
    args = parser.parse_args(argv)
    from hftl.assets import fetch_all
    from hftl.logs import quiet_libraries

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    paths = fetch_all([name for t in tasks for name in (TASKS[t]["model"].removeprefix("hftl:"),
                                                         TASKS[t]["asset"])])  # fmt: skip
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_libraries():
        workdir = Path(tmp)
        for name in tasks:
            task = TASKS[name]
            data = DATA[name](paths[task["asset"]], workdir / name, task)
            recipe = load_recipe(task["recipe"]).main
            for setting, flags in SETTINGS.items():
                for seed in seeds:
                    run_started = time.perf_counter()
                    report, trainer = recipe([
                        "--model_name_or_path", task["model"], *data, *task["flags"],
                        "--strategy", "feature_extraction",
                        "--feature_cache_dir", str(workdir / "features"), *flags,
                        *quiet_run(0, workdir / "runs" / f"{name}-{setting}-{seed}"),
                        "--data_seed", str(seed),
                    ])  # fmt: skip
                    rare = report["per_class"][task["rare"]]
                    rows.append({
                        "task": name, "setting": setting, "seed": seed,
                        "macro_f1": report["f1"], "accuracy": report["accuracy"],
                        "rare_recall": rare["recall"], "rare_precision": rare["precision"],
                        "other_recall": statistics.mean(s["recall"] for label, s in report["per_class"].items()
                                                        if label != task["rare"]),
                        "weights": trainer.label_spec.class_weights,
                        "train_counts": trainer.label_spec.counts,
                        "seconds": round(time.perf_counter() - run_started, 1),
                    })  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
    write_report(rows, tasks, seeds, Path(args.out), time.perf_counter() - started)
    return rows


def write_report(
    rows: list[dict], tasks: list[str], seeds: list[int], out: Path, seconds: float
) -> None:
    def cell(values, percent=False):
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.1%} ± {sd:.1%}" if percent else f"{mean:.3f} ± {sd:.3f}"

    lines = [
        "# Class weights on imbalanced data",
        "",
        "One class of a real dataset kept at 10% of the others in training (the validation data keeps",
        "its natural balance); the same run without class weights, with `--class_weights inverse`",
        "(N / (classes x n_class)) and with `--class_weights effective` (effective number of samples,",
        f"beta 0.999). A new head on frozen features, data orders (`--data_seed`) "
        f"{', '.join(map(str, seeds))} (mean ± sd), the head's initial weights the same (`--seed 0`).",
        "",
        f"Reproduce: `python scripts/class_weights_study.py --tasks {','.join(tasks)} "
        f"--seeds {','.join(map(str, seeds))}` ({seconds / 60:.1f} minutes on {describe_hardware()}).",
        "",
    ]
    for name in tasks:
        task = TASKS[name]
        first = next(r for r in rows if r["task"] == name)
        lines += [f"## {task['title']}", "",
                  f"Training examples per class: {first['train_counts']} (the rare class: `{task['rare']}`).", "",
                  "| class weights | macro-F1 | accuracy | rare class recall | rare class precision | other classes' recall | weights |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for setting in SETTINGS:
            runs = [r for r in rows if r["task"] == name and r["setting"] == setting]
            weights = runs[0]["weights"]
            shown = "-" if weights is None else ", ".join(f"{w:.2f}" for w in weights)
            lines.append(
                f"| {setting} | {cell([r['macro_f1'] for r in runs])} | "
                f"{cell([r['accuracy'] for r in runs], True)} | "
                f"{cell([r['rare_recall'] for r in runs], True)} | "
                f"{cell([r['rare_precision'] for r in runs], True)} | "
                f"{cell([r['other_recall'] for r in runs], True)} | {shown} |"
            )
        lines.append("")
    lines += ["## Every run", "", "```json", *(json.dumps(r) for r in rows), "```", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
