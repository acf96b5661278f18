"""Does transfer learning deliver what it promises? A study on hftl's offline assets.

    python scripts/transfer_study.py --quick            # a few minutes: a CI-sized check
    python scripts/transfer_study.py                    # the study in docs/transfer_study.md
    python scripts/transfer_study.py --tasks text --sizes 50 200 --seeds 0 1 2 --arms full scratch

For each task (text: all-MiniLM-L6-v2 on Rotten Tomatoes; image: EfficientNet-Lite0 on MNIST;
audio: Whisper tiny.en's encoder on the initials of spoken Mandarin syllables), training-set size and
seed, it trains every arm through the real recipes and records the accuracy on the asset's *test*
split (never used for any choice here; for audio, the other speaker's recordings):

  scratch             same architecture, random weights, everything trains
  feature_extraction  pretrained, frozen backbone, new head
  partial             pretrained, top block(s) + head
  full_llrd           pretrained, everything, layer-wise LR decay, head LR x10
  gradual             pretrained, head first, one more block every steps/9 steps, LLRD
  lora                pretrained, LoRA adapters (r=8) + head; LR x20 (text), x5 (image)
  full_high_lr        pretrained, everything, a learning rate 30x too high
  feature_extraction_cls, lora_cls (text only): those arms with --pooling cls, the head reading
                      the [CLS] token through BERT's pooler instead of the mean of the tokens that
                      all-MiniLM-L6-v2 was trained for (hftl's default for it, --pooling auto)

Every run gets the same number of optimizer steps for a given size (epochs scale with the data).
The image task runs EfficientNet-Lite0 at --image_size pixels (default 112, not its native 224) to
fit a 2-core CPU; the script says so in its output. It writes results.csv, results.json and
accuracy_vs_size.png under --output_dir.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hftl.outputs import describe_hardware

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("scratch", "feature_extraction", "partial", "full_llrd", "gradual", "lora", "full_high_lr",
        "feature_extraction_cls", "lora_cls")  # fmt: skip
POOLING_ARMS = {"feature_extraction_cls": "feature_extraction", "lora_cls": "lora"}

# Per task: the recipe, the asset paths, the base learning rate and per-arm flags.
TASKS = {
    "text": {
        "recipe": "sentiment",
        "title": "MiniLM, Rotten Tomatoes",
        "data": ["--train_file", "hftl:rotten-tomatoes/train.csv", "--validation_file", "hftl:rotten-tomatoes/test.csv",
                 "--max_seq_length", "96"],
        "model": "hftl:minilm",
        "lr": 5e-5,
        "batch_size": 16,
        "partial_blocks": 2,
        "lora_lr_multiplier": 20,
        "arms": ARMS,
    },
    "image": {
        "recipe": "image_classification",
        "title": "EfficientNet-Lite0 ({image_size} px), MNIST",
        "data": ["--train_dir", "hftl:mnist/train", "--validation_dir", "hftl:mnist/test", "--augmentation", "false"],
        "model": "hftl:efficientnet-lite0",
        "lr": 1e-3,
        "batch_size": 32,
        "partial_blocks": 2,
        "lora_lr_multiplier": 5,  # 20x (2e-2) diverged on EfficientNet: 10% (chance) at every size
        "arms": tuple(arm for arm in ARMS if arm not in POOLING_ARMS),  # pooling: a text option
    },
    # The initial consonant of a Mandarin syllable (24 classes) from one speaker, tested on the
    # other speaker; Whisper's window cut to 1 s (the clips are under 0.7 s). A small training
    # subset may miss a rare class: its test rows are then left out (the same for every arm).
    "audio": {
        "recipe": "audio_classification",
        "title": "Whisper tiny.en (1 s window), gcin-voice initials",
        "data": ["--train_dir", "hftl:gcin-voice/initial/train", "--validation_dir", "hftl:gcin-voice/initial/validation",
                 "--encoder_window_seconds", "1", "--max_length_seconds", "1",
                 "--drop_unseen_validation_labels", "true"],
        "model": "hftl:whisper-tiny-en",
        "lr": 1e-4,
        "batch_size": 32,
        "partial_blocks": 1,
        "lora_lr_multiplier": 10,
        "arms": tuple(arm for arm in ARMS if arm not in POOLING_ARMS),
    },
}  # fmt: skip


def arm_flags(arm: str, task: dict, steps: int) -> list[str]:
    if arm in POOLING_ARMS:
        return [*arm_flags(POOLING_ARMS[arm], task, steps), "--pooling", "cls"]
    lr = task["lr"]
    every = str(
        max(1, steps // 9)
    )  # one more block every `every` steps: all unfrozen within the run
    flags = {
        "scratch": ["--strategy", "full", "--from_scratch", "true", "--learning_rate", str(lr * 10)],
        "feature_extraction": ["--strategy", "feature_extraction", "--learning_rate", str(lr * 50)],
        "partial": ["--strategy", "partial", "--num_trainable_layers", str(task["partial_blocks"]),
                    "--learning_rate", str(lr), "--head_lr_multiplier", "10"],
        "full_llrd": ["--strategy", "full", "--layer_decay", "0.8", "--learning_rate", str(lr), "--head_lr_multiplier", "10"],
        "gradual": ["--strategy", "gradual", "--unfreeze_unit", "step", "--unfreeze_every", every, "--layer_decay", "0.8",
                    "--learning_rate", str(lr), "--head_lr_multiplier", "10"],
        "lora": ["--strategy", "lora", "--lora_r", "8", "--learning_rate", str(lr * task["lora_lr_multiplier"])],
        "full_high_lr": ["--strategy", "full", "--learning_rate", str(lr * 30)],
    }  # fmt: skip
    return flags[arm]


def epochs_for(size: int, batch_size: int, steps: int, max_epochs: int = 30) -> int:
    """Enough epochs for about ``steps`` optimizer steps, at least 2 (gradual needs epochs)."""
    return max(2, min(max_epochs, math.ceil(steps * batch_size / size)))


def quiet_run(seed: int, output_dir: Path) -> list[str]:
    """The flags every run of a study shares: its seed and directory, no checkpoints, no logs."""
    return [
        "--seed", str(seed), "--output_dir", str(output_dir), "--overwrite_output_dir", "true",
        "--save_strategy", "no", "--logging_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true",
    ]  # fmt: skip


def load_recipe(name: str):
    from hftl.testing import load_script

    return load_script(ROOT / "recipes" / f"{name}.py")


def image_model_at(size: int, workdir: Path, asset: str = "efficientnet-lite0") -> str:
    """A copy of an image model asset whose preprocessing config says ``size`` pixels."""
    from hftl.assets import fetch

    source = fetch(asset)
    target = workdir / f"{asset}-{size}px"
    if not target.exists():
        shutil.copytree(source, target)
        config = json.loads((target / "config.json").read_text())
        config["pretrained_cfg"]["input_size"] = [3, size, size]
        config["pretrained_cfg"]["test_input_size"] = [3, size, size]
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return str(target)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, three arms")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[50, 200, 1000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument(
        "--steps", type=int, default=150, help="optimizer steps per run (epochs scale)"
    )
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--output_dir", default=str(ROOT / "docs" / "transfer_study"))
    parser.add_argument(
        "--include_rows",
        help="JSON lines of rows printed by an earlier run (e.g. the other task) to report together",
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="rewrite results.md and the plot from results.json",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads((Path(args.output_dir) / "results.json").read_text())
        write_report(saved["runs"], saved["meta"], Path(args.output_dir))
        return saved["runs"]
    if args.quick:
        args.sizes, args.seeds, args.arms, args.steps = (
            [50],
            [0],
            ["scratch", "feature_extraction", "full_llrd"],
            20,
        )
    logging.getLogger("hftl").setLevel(logging.WARNING)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hftl-study-"))
    if "image" in args.tasks:
        print(
            f"image task at {args.image_size} px (EfficientNet-Lite0's native size is 224)",
            flush=True,
        )

    rows: list[dict] = []
    started = time.perf_counter()
    for task_name in args.tasks:
        task = TASKS[task_name]
        recipe = load_recipe(task["recipe"])
        model = image_model_at(args.image_size, workdir) if task_name == "image" else task["model"]
        for size in args.sizes:
            epochs = epochs_for(size, task["batch_size"], args.steps)
            for seed in args.seeds:
                for arm in (a for a in args.arms if a in task["arms"]):
                    flags = [
                        "--model_name_or_path", model, *task["data"], *arm_flags(arm, task, args.steps),
                        "--max_train_samples", str(size), "--num_train_epochs", str(epochs),
                        "--per_device_train_batch_size", str(task["batch_size"]), "--per_device_eval_batch_size", "64",
                        "--weight_decay", "0.01", *quiet_run(seed, workdir / "run"),
                    ]  # fmt: skip
                    run_start = time.perf_counter()
                    report, _ = recipe.main(flags)
                    row = {
                        "task": task_name, "size": size, "seed": seed, "arm": arm, "epochs": epochs,
                        "accuracy": round(report["accuracy"], 4), "macro_f1": round(report["f1"], 4),
                        "seconds": round(time.perf_counter() - run_start, 1),
                    }  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    shutil.rmtree(workdir / "run", ignore_errors=True)
    total = time.perf_counter() - started
    if args.include_rows:
        earlier = [json.loads(line) for line in Path(args.include_rows).read_text().splitlines()]
        ran = {(row["task"], row["arm"]) for row in rows}
        rows = [row for row in earlier if (row["task"], row["arm"]) not in ran] + rows
    write_results(rows, out, args, total)
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def write_results(rows: list[dict], out: Path, args, total_seconds: float) -> None:
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "command": "python scripts/transfer_study.py "
        + " ".join(sys.argv[1:])
        + (" (other rows: from the runs that printed them)" if args.include_rows else ""),
        "hardware": describe_hardware(),
        "date": time.strftime("%Y-%m-%d"),
        "image_size": args.image_size,
        "steps_per_run": args.steps,
        "wall_time_minutes": round(total_seconds / 60, 1),
        "summary": summarise(rows),
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    write_report(rows, meta, out)
    print(
        f"\nwrote {out}: results.csv, results.json, results.md, accuracy_vs_size.png ({total_seconds / 60:.1f} min)"
    )


def write_report(rows: list[dict], meta: dict, out: Path) -> None:
    """results.md: generated, never edited by hand. Mean test accuracy over seeds [min-max]."""
    plot(rows, out / "accuracy_vs_size.png", meta["image_size"])
    arms = [arm for arm in ARMS if any(r["arm"] == arm for r in rows)]
    lines = [
        "# Transfer study: results (generated by scripts/transfer_study.py; do not edit)",
        "",
        f"- Command: `{meta['command']}`",
        f"- Hardware: {meta['hardware']}; date {meta.get('date', '?')}; wall time {meta['wall_time_minutes']} min",
        f"- {meta['steps_per_run']} optimizer steps per run (epochs scale with the data); "
        + (
            f"image task at {meta['image_size']} px; "
            if any(r["task"] == "image" for r in rows)
            else ""
        )
        + "accuracy on each asset's test split; mean over seeds [min-max].",
        "",
        "![accuracy vs training-set size](accuracy_vs_size.png)",
    ]
    for task in sorted({r["task"] for r in rows}, reverse=True):
        sizes = sorted({r["size"] for r in rows if r["task"] == task})
        lines += ["", f"## {task}", "", "| arm | " + " | ".join(f"n={s}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]  # fmt: skip
        for arm in (a for a in arms if any((r["task"], r["arm"]) == (task, a) for r in rows)):
            cells = []
            for size in sizes:
                values = [
                    r["accuracy"]
                    for r in rows
                    if (r["task"], r["arm"], r["size"]) == (task, arm, size)
                ]
                cells.append(
                    f"{statistics.mean(values):.1%} [{min(values):.1%}-{max(values):.1%}]"
                    if values
                    else ""
                )
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def summarise(rows: list[dict]) -> dict:
    """Mean, min and max accuracy over seeds, per task, size and arm."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["task"], row["size"], row["arm"]), []).append(row["accuracy"])
    return {
        f"{task}/{size}/{arm}": {
            "mean": round(statistics.mean(v), 4),
            "min": min(v),
            "max": max(v),
            "n": len(v),
        }
        for (task, size, arm), v in sorted(groups.items())
    }


def plot(rows: list[dict], path: Path, image_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({row["task"] for row in rows})
    figure, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.5), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for arm in ARMS:
            points = sorted({(r["size"]) for r in rows if r["task"] == task and r["arm"] == arm})
            if not points:
                continue
            accuracies = [
                [
                    r["accuracy"]
                    for r in rows
                    if r["task"] == task and r["arm"] == arm and r["size"] == s
                ]
                for s in points
            ]
            means = [statistics.mean(a) for a in accuracies]
            dashed = arm in POOLING_ARMS  # the [CLS] variants of two arms
            axis.plot(points, means, marker="o", label=arm, linestyle="--" if dashed else "-")
            axis.fill_between(
                points, [min(a) for a in accuracies], [max(a) for a in accuracies], alpha=0.15
            )
        name = TASKS[task]["title"].format(image_size=image_size) if task in TASKS else task
        axis.set(
            xscale="log",
            xlabel="training examples",
            ylabel="test accuracy",
            title=name,
            ylim=(0, 1),
        )
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
