"""Does ``hftl advise`` pick the right model and strategy? Its scores against fine-tuning, offline.

    python scripts/advise_study.py                       # all three parts (about 45 min, 2 cores)
    python scripts/advise_study.py --parts strategy      # seconds: advice vs the transfer study
    python scripts/advise_study.py --quick               # a CI-sized check of every part
    python scripts/advise_study.py --report_only         # rewrite results.md from results.json

Three parts, each written to results.json / results.md under --output_dir:

ranking   For each dataset (MNIST digits, Fashion-MNIST, the textile images; Rotten Tomatoes and
          VADER's Amazon reviews for text), hftl advise scores the models (EfficientNet-Lite0, -Lite1,
          -Lite2 and Lite0 from random weights as a control; MiniLM and MiniLM from random
          weights) on the training subset, then each model is fine-tuned on the same subset with
          the same recipe settings (full fine-tuning, LLRD 0.8, head LR x10) and tested on the
          asset's test split (text: the held-out validation split). Kendall tau between each score
          and the test accuracy, per dataset and over all (model, dataset) pairs.
strategy  For every task and size of docs/transfer_study/results.json, hftl advise on the same
          training subset (same model, data, seeds) and the accuracy its strategy got in that study
          against the best arm's.
heldout   The same comparison on data the rules were not written from: Fashion-MNIST and the
          textile images at two sizes, the transfer study's image arms (feature_extraction,
          partial, full_llrd, lora; its settings and step budget) run here, one seed.
timing    hftl advise at full size (4,000 MNIST images at the models' native resolution; 5,000
          Rotten Tomatoes reviews) with an empty feature cache: extraction seconds against the
          loading and scoring seconds of each model.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hftl.outputs import describe_hardware
from hftl.testing import load_script

ROOT = Path(__file__).resolve().parents[1]
study = load_script(ROOT / "scripts" / "transfer_study.py")  # its tasks, arms and model copies

IMAGE_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
IMAGE_TUNING = ["--strategy", "full", "--layer_decay", "0.8", "--head_lr_multiplier", "10",
                "--learning_rate", "1e-3", "--per_device_train_batch_size", "32",
                "--num_train_epochs", "3", "--augmentation", "false"]  # fmt: skip
TEXT_TUNING = ["--strategy", "full", "--layer_decay", "0.8", "--head_lr_multiplier", "10",
               "--learning_rate", "5e-5", "--per_device_train_batch_size", "16",
               "--num_train_epochs", "2", "--max_seq_length", "96"]  # fmt: skip
DATASETS = {
    "mnist": ("image", ["--train_dir", "hftl:mnist/train", "--validation_dir", "hftl:mnist/test"]),
    "fashion-mnist": ("image", ["--train_dir", "hftl:fashion-mnist/train",
                                "--validation_dir", "hftl:fashion-mnist/test"]),
    "textile": ("image", ["--train_dir", "hftl:textile/train", "--validation_dir", "hftl:textile/test"]),
    "rotten-tomatoes": ("text", ["--train_file", "hftl:rotten-tomatoes/train.csv",
                                 "--validation_file", "hftl:rotten-tomatoes/test.csv"]),
    "amazon-reviews": ("text", ["--train_file", "hftl:vader-sentiment/amazon.csv",
                                "--label_column_name", "label"]),
}  # fmt: skip
RECIPES = {"image": "image_classification", "text": "sentiment"}
TASK_NAMES = {"image": "image-classification", "text": "text-classification"}
STRATEGY_ARMS = {"feature_extraction": "feature_extraction", "partial": "partial",
                 "full": "full_llrd", "gradual": "gradual", "lora": "lora"}  # fmt: skip
SCORES = ("logme", "probe_accuracy", "leep", "nce")


def advise_on(task_kind: str, flags: list[str], models: list[str], *, controls=(), seed=0,
              max_samples=5000, cache_dir=None) -> dict:  # fmt: skip
    """hftl advise through its own parser: the Advice as a dict (the models named by ``flags``'
    paths)."""
    from hftl.advise import AdviseArguments, advise
    from hftl.config import parse_config
    from hftl.data import DataArguments
    from hftl.tasks import task_of

    task = task_of(TASK_NAMES[task_kind])
    argv = [*flags, "--models", *models, "--seed", str(seed), "--max_samples", str(max_samples),
            "--disable_tqdm", "true"]  # fmt: skip
    if cache_dir:
        argv += ["--feature_cache_dir", str(cache_dir)]
    advise_args, data_args, task_args = parse_config(
        (AdviseArguments, DataArguments, task.arguments), argv, prog="advise_study"
    )
    return advise(task, data_args, task_args, advise_args, controls=tuple(controls)).to_dict()


def run_recipe(task_kind: str, flags: list[str], workdir: Path, seed: int) -> float:
    """One run of the task's recipe with ``flags`` (and the study's shared ones): its test
    accuracy; its output directory is removed after."""
    recipe = study.load_recipe(RECIPES[task_kind])
    report, _ = recipe.main([*flags, "--weight_decay", "0.01", "--per_device_eval_batch_size", "64",
                             *study.quiet_run(seed, workdir / "run")])  # fmt: skip
    shutil.rmtree(workdir / "run", ignore_errors=True)
    return round(report["accuracy"], 4)


def fine_tune(task_kind: str, model: str, flags: list[str], workdir: Path, seed: int,
              scratch: bool = False) -> float:  # fmt: skip
    tuning = IMAGE_TUNING if task_kind == "image" else TEXT_TUNING
    argv = ["--model_name_or_path", model, *flags, *tuning, "--from_scratch", str(scratch).lower()]
    return run_recipe(task_kind, argv, workdir, seed)


def ranking_part(args, workdir: Path) -> list[dict]:
    rows = []
    for name in args.datasets:
        kind, flags = DATASETS[name]
        flags = [*flags, "--max_train_samples", str(args.train_size)]
        if kind == "image":
            models = {study.image_model_at(args.image_size, workdir, m): m for m in IMAGE_MODELS}
            control = next(iter(models))
        else:
            models = {"hftl:minilm": "minilm"}
            control = "hftl:minilm"
        started = time.perf_counter()
        advice = advise_on(kind, flags, list(models), controls=[control], seed=args.seed)
        advise_seconds = time.perf_counter() - started
        for score in advice["models"]:
            scratch = score["from_scratch"]
            label = models[score["model"]] + (" (random init)" if scratch else "")
            run_started = time.perf_counter()
            accuracy = fine_tune(kind, score["model"], flags, workdir, args.seed, scratch)
            row = {"dataset": name, "task": kind, "model": label,
                   **{key: _round(score[key]) for key in SCORES},
                   "source_explained": _round(score["source_explained"]),
                   "accuracy": accuracy, "extract_seconds": score["extract_seconds"],
                   "tune_seconds": round(time.perf_counter() - run_started, 1),
                   "advised": advice["recommendation"]["model"] == score["model"] and not scratch,
                   "advise_seconds": round(advise_seconds, 1)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def strategy_part(args, workdir: Path) -> list[dict]:
    results = json.loads((ROOT / "docs" / "transfer_study" / "results.json").read_text())
    summary = results["meta"]["summary"]
    image_size = results["meta"]["image_size"]
    rows = []
    for kind in args.strategy_tasks:
        spec = study.TASKS[kind]
        model = study.image_model_at(image_size, workdir) if kind == "image" else spec["model"]
        sizes = sorted({int(key.split("/")[1]) for key in summary if key.startswith(f"{kind}/")})
        for size in sizes:
            arms = {k.split("/")[2]: v["mean"] for k, v in summary.items()
                    if k.startswith(f"{kind}/{size}/")}  # fmt: skip
            best_arm = max(arms, key=arms.get)
            for seed in args.strategy_seeds:
                advice = advise_on(kind, [*spec["data"], "--max_train_samples", str(size)],
                                   [model], seed=seed)  # fmt: skip
                rec = advice["recommendation"]
                arm = STRATEGY_ARMS.get(rec["strategy"])
                score = advice["models"][0]
                row = {"task": kind, "size": size, "seed": seed, "advised": rec["strategy"],
                       "advised_arm": arm, "advised_accuracy": arms.get(arm),
                       "best_arm": best_arm, "best_accuracy": arms[best_arm],
                       "loss_points": None if arm not in arms else round(100 * (arms[best_arm] - arms[arm]), 1),
                       "probe_accuracy": _round(score["probe_accuracy"]), "logme": _round(score["logme"]),
                       "per_class": round(advice["data"]["examples"] / advice["data"]["classes"], 1)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


HELDOUT = {"fashion-mnist": (200, 1000), "textile": (200, 1600)}
HELDOUT_ARMS = ("feature_extraction", "partial", "full_llrd", "lora")


def heldout_part(args, workdir: Path) -> list[dict]:
    """The advised strategy against the arms run here, on datasets outside the transfer study."""
    spec = study.TASKS["image"]
    model = study.image_model_at(args.image_size, workdir)
    rows = []
    for name, sizes in list(HELDOUT.items())[: 1 if args.quick else None]:
        _, flags = DATASETS[name]
        for size in sizes if not args.quick else sizes[:1]:
            data = [*flags, "--max_train_samples", str(size), "--augmentation", "false"]
            advice = advise_on("image", data, [model], seed=args.seed)
            epochs = study.epochs_for(size, spec["batch_size"], args.heldout_steps)
            accuracy = {
                arm: run_recipe("image", [
                    "--model_name_or_path", model, *data, *study.arm_flags(arm, spec, args.heldout_steps),
                    "--num_train_epochs", str(epochs), "--per_device_train_batch_size", str(spec["batch_size"]),
                ], workdir, args.seed)
                for arm in HELDOUT_ARMS
            }  # fmt: skip
            advised = advice["recommendation"]["strategy"]
            arm = STRATEGY_ARMS.get(advised)
            best = max(accuracy, key=accuracy.get)
            row = {"dataset": name, "size": size, "seed": args.seed, "epochs": epochs,
                   "probe_accuracy": _round(advice["models"][0]["probe_accuracy"]),
                   "advised": advised, "accuracy": accuracy, "best_arm": best,
                   "loss_points": None if arm not in accuracy else round(100 * (accuracy[best] - accuracy[arm]), 1)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def timing_part(args, workdir: Path) -> list[dict]:
    from hftl.assets import fetch

    rows = []
    cases = [("image", ["--train_dir", "hftl:mnist/train", "--validation_dir", "hftl:mnist/test"],
              [f"hftl:{m}" for m in IMAGE_MODELS]),
             ("text", ["--train_file", "hftl:rotten-tomatoes/train.csv", "--validation_file",
                       "hftl:rotten-tomatoes/test.csv", "--max_seq_length", "96"], ["hftl:minilm"])]  # fmt: skip
    for kind, flags, models in cases:
        for model in models:
            fetch(model.removeprefix("hftl:"))
        cache = workdir / f"timing-cache-{kind}"
        shutil.rmtree(cache, ignore_errors=True)
        flags = [*flags, "--max_train_samples", str(args.timing_size)]
        started = time.perf_counter()
        advice = advise_on(kind, flags, models, seed=args.seed, max_samples=5000, cache_dir=cache)
        wall = time.perf_counter() - started
        for score in advice["models"]:
            row = {"task": kind, "model": score["model"], "examples": advice["data"]["scored"],
                   "feature_dim": score["feature_dim"], "extract_seconds": score["extract_seconds"],
                   "load_seconds": score["load_seconds"], "score_seconds": score["score_seconds"],
                   "overhead_seconds": round(score["load_seconds"] + score["score_seconds"], 2),
                   "wall_seconds_all_models": round(wall, 1)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def _round(value, digits: int = 4):
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def kendall(xs, ys) -> float | None:
    from scipy.stats import kendalltau

    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None]
    if len(pairs) < 2:
        return None
    tau = kendalltau(*zip(*pairs, strict=True)).statistic
    return None if tau != tau else round(float(tau), 3)  # NaN: a constant column


def ranking_summary(rows: list[dict]) -> dict:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    out = {"per_dataset": {}, "pooled": {}, "mean_over_datasets": {}}
    for name in datasets:
        part = [r for r in rows if r["dataset"] == name]
        out["per_dataset"][name] = {s: kendall([r[s] for r in part], [r["accuracy"] for r in part])
                                    for s in SCORES}  # fmt: skip
        advised = next((r for r in part if r["advised"]), None)
        best = max(part, key=lambda r: r["accuracy"])
        out["per_dataset"][name]["advised_model"] = advised and advised["model"]
        out["per_dataset"][name]["best_model"] = best["model"]
        out["per_dataset"][name]["advice_loss_points"] = advised and round(
            100 * (best["accuracy"] - advised["accuracy"]), 1
        )
    pretrained = {}  # the choice among real candidates: the random-init controls left out
    for name in datasets:
        part = [r for r in rows if r["dataset"] == name and "random init" not in r["model"]]
        if len(part) > 2:
            pretrained[name] = kendall([r["logme"] for r in part], [r["accuracy"] for r in part])
    out["logme_pretrained_only"] = pretrained
    for s in SCORES:
        out["pooled"][s] = kendall([r[s] for r in rows], [r["accuracy"] for r in rows])
        values = [v[s] for v in out["per_dataset"].values() if v[s] is not None]
        out["mean_over_datasets"][s] = round(statistics.mean(values), 3) if values else None
    return out


def write_report(results: dict, out: Path) -> None:
    meta = results["meta"]
    lines = [
        "# Advise study: results (generated by scripts/advise_study.py; do not edit)",
        "",
        f"- Command: `{meta['command']}`"
        + (f" (earlier parts: `{meta['earlier_parts']}`)" if meta.get("earlier_parts") else ""),
        f"- Hardware: {meta['hardware']}; date {meta['date']}; wall time {meta['wall_time_minutes']} min",
        "",
    ]
    ranking = results.get("ranking")
    if ranking:
        lines += [
            "## Model ranking: advised scores against accuracy after fine-tuning",
            "",
            f"Training subset {meta['train_size']} examples, seed {meta['seed']}; images at "
            f"{meta['image_size']} px. Fine-tuning: full, LLRD 0.8, head LR x10, 3 epochs (images) / "
            "2 epochs (text); accuracy on the asset's test split (Amazon reviews: the held-out "
            "validation split).",
            "",
            "| dataset | model | LogME | probe | LEEP | NCE | source explained | fine-tuned accuracy | advised |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ranking:
            lines.append(
                f"| {r['dataset']} | {r['model']} | {_cell(r['logme'], '.3f')} | "
                f"{_cell(r['probe_accuracy'], '.1%')} | {_cell(r['leep'], '.3f')} | "
                f"{_cell(r['nce'], '.3f')} | {_cell(r['source_explained'], '.0%')} | "
                f"{r['accuracy']:.1%} | {'yes' if r['advised'] else ''} |"
            )
        summary = results["ranking_summary"]
        lines += ["", "Kendall tau between each score and the fine-tuned accuracy:", "",
                  "| | " + " | ".join(SCORES) + " | advised model | best model | points lost |",
                  "|---|" + "---|" * (len(SCORES) + 3)]  # fmt: skip
        for name, taus in summary["per_dataset"].items():
            lines.append(
                f"| {name} | " + " | ".join(_cell(taus[s], '.2f') for s in SCORES)
                + f" | {taus['advised_model']} | {taus['best_model']} | {taus['advice_loss_points']} |"
            )  # fmt: skip
        lines.append("| mean over datasets | " + " | ".join(
            _cell(summary["mean_over_datasets"][s], ".2f") for s in SCORES) + " | | | |")  # fmt: skip
        lines.append("| all (model, dataset) pairs | " + " | ".join(
            _cell(summary["pooled"][s], ".2f") for s in SCORES) + " | | | |")  # fmt: skip
        lines.append("")
        if summary.get("logme_pretrained_only"):
            cells = ", ".join(
                f"{k} {_cell(v, '.2f')}" for k, v in summary["logme_pretrained_only"].items()
            )
            lines += [
                f"LogME's tau among the pretrained models alone (controls left out): {cells}.",
                "",
            ]
    strategy = results.get("strategy")
    if strategy:
        lines += [
            "## Strategy: the advised arm against the best arm of docs/transfer_study",
            "",
            "| task | size | seed | probe | advised | its accuracy | best arm | best accuracy | points lost |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in strategy:
            lines.append(
                f"| {r['task']} | {r['size']} | {r['seed']} | {_cell(r['probe_accuracy'], '.1%')} | "
                f"{r['advised']} | {_cell(r['advised_accuracy'], '.1%')} | {r['best_arm']} | "
                f"{r['best_accuracy']:.1%} | {_cell(r['loss_points'], '.1f')} |"
            )
        losses = [r["loss_points"] for r in strategy if r["loss_points"] is not None]
        if losses:
            lines += ["", f"Mean points lost against the best arm: {statistics.mean(losses):.2f} "
                      f"(over {len(losses)} advice runs; max {max(losses):.1f}).", ""]  # fmt: skip
    heldout = results.get("heldout")
    if heldout:
        lines += [
            "## Strategy on data the rules were not written from (EfficientNet-Lite0, one seed)",
            "",
            "| dataset | size | epochs | probe | advised | "
            + " | ".join(HELDOUT_ARMS)
            + " | points lost |",
            "|---|---|---|---|---|" + "---|" * len(HELDOUT_ARMS) + "---|",
        ]
        for r in heldout:
            lines.append(
                f"| {r['dataset']} | {r['size']} | {r['epochs']} | {_cell(r['probe_accuracy'], '.1%')} | "
                f"{r['advised']} | " + " | ".join(f"{r['accuracy'][a]:.1%}" for a in HELDOUT_ARMS)
                + f" | {_cell(r['loss_points'], '.1f')} |"
            )  # fmt: skip
        losses = [r["loss_points"] for r in heldout if r["loss_points"] is not None]
        if losses:
            lines += [
                "",
                f"Mean points lost against the best arm: {statistics.mean(losses):.2f}.",
                "",
            ]
    timing = results.get("timing")
    if timing:
        lines += [
            "## Timing: one extraction pass plus the overhead per model",
            "",
            "| task | model | examples | dim | extraction s | load s | score s | load + score s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in timing:
            lines.append(
                f"| {r['task']} | {r['model']} | {r['examples']} | {r['feature_dim']} | "
                f"{r['extract_seconds']:.1f} | {r['load_seconds']:.1f} | {r['score_seconds']:.1f} | "
                f"{r['overhead_seconds']:.1f} |"
            )
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    if ranking:
        plot(ranking, out / "logme_vs_accuracy.png")


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.2))
    for axis, name in zip(axes if len(datasets) > 1 else [axes], datasets, strict=True):
        part = [r for r in rows if r["dataset"] == name]
        for r in part:
            axis.scatter(r["logme"], r["accuracy"], marker="x" if "random" in r["model"] else "o")
            axis.annotate(r["model"].replace("efficientnet-", "").replace(" (random init)", " rnd"),
                          (r["logme"], r["accuracy"]), fontsize=7)  # fmt: skip
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("LogME")
    axes_list = axes if len(datasets) > 1 else [axes]
    axes_list[0].set_ylabel("accuracy after fine-tuning")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["ranking", "strategy", "heldout", "timing"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--heldout_steps", type=int, default=60, help="as the transfer study")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--train_size", type=int, default=1000)
    parser.add_argument("--timing_size", type=int, default=5000)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy_tasks", nargs="+", default=["image", "text"])
    parser.add_argument("--strategy_seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CI-sized check")
    parser.add_argument("--output_dir", default=str(ROOT / "docs" / "advise_study"))
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
        if results.get("ranking"):
            results["ranking_summary"] = ranking_summary(results["ranking"])
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_report(results, out)
        return results
    if args.quick:
        args.datasets, args.train_size, args.timing_size = ["textile", "rotten-tomatoes"], 60, 100
        args.image_size, args.strategy_seeds, args.heldout_steps = 64, [0], 4
        global IMAGE_TUNING, TEXT_TUNING  # noqa: PLW0603 - one epoch in the quick check
        IMAGE_TUNING = [*IMAGE_TUNING, "--num_train_epochs", "1"]
        TEXT_TUNING = [*TEXT_TUNING, "--num_train_epochs", "1"]
    logging.getLogger("hftl").setLevel(logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hftl-advise-study-"))
    started = time.perf_counter()
    results: dict = {}
    if "ranking" in args.parts:
        results["ranking"] = ranking_part(args, workdir)
        results["ranking_summary"] = ranking_summary(results["ranking"])
    if "strategy" in args.parts:
        results["strategy"] = strategy_part(args, workdir)
    if "heldout" in args.parts:
        results["heldout"] = heldout_part(args, workdir)
    if "timing" in args.parts:
        results["timing"] = timing_part(args, workdir)
    results["meta"] = {
        "command": "python scripts/advise_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "hardware": describe_hardware(),
        "date": time.strftime("%Y-%m-%d"),
        "wall_time_minutes": round((time.perf_counter() - started) / 60, 1),
        "train_size": args.train_size,
        "image_size": args.image_size,
        "seed": args.seed,
    }  # fmt: skip
    previous = out / "results.json"
    if previous.exists() and not args.quick:  # parts run separately are reported together
        kept = json.loads(previous.read_text())
        results = {**{k: v for k, v in kept.items() if k != "meta"}, **results}
        results["meta"]["earlier_parts"] = kept["meta"].get("command")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, out)
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwrote {out}: results.json, results.md")
    return results


if __name__ == "__main__":
    from hftl.logs import quiet_libraries

    with quiet_libraries():  # transformers' load reports: each run's train.log has them
        main()
