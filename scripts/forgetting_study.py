"""What do hftl's forgetting guards and robust fine-tuning buy? A study on the offline assets.

    python scripts/forgetting_study.py --part text --quick     # minutes: a CI-sized check
    python scripts/forgetting_study.py --part text             # docs/forgetting_study/text
    python scripts/forgetting_study.py --part images           # docs/forgetting_study/images

Text, in and out of distribution (``--part text``): all-MiniLM-L6-v2 (hftl's mean-pooled head)
fine-tuned on 2,000 Rotten Tomatoes critic snippets (fresh / rotten), then evaluated

* in distribution: the Rotten Tomatoes asset's *test* split (never used for any choice here);
* out of distribution: three sets of the VADER paper (Hutto & Gilbert 2014), labelled by the sign
  of about 20 people's mean rating: Amazon review snippets, tweets, New York Times editorial
  snippets; a fixed sample of ``--ood_rows`` each, texts that also occur in the Rotten Tomatoes
  corpus left out. (VADER's fourth set, movie-review snippets, is the Rotten Tomatoes corpus
  itself: 97% of its texts are in the asset's splits, so it is not out of distribution.)

Methods, each with the same optimizer, schedule, steps and layer-wise LR decay (0.85):

  full     every layer from a random head, head LR x10 (the demo's settings)
  lp_ft    the head first fitted by a linear probe, then every layer, head LR x1 (as in Kumar et
           al.: the probed head needs no faster LR)
  + WiSE-FT of each: (1 - alpha) * start + alpha * fine-tuned for alpha in --alphas, from the
           run's two end points (``guards: [wise_ft]``). For ``full`` the head is the fine-tuned
           one at every alpha (its start is random); for ``lp_ft`` the head is mixed too, so
           alpha 0 is the linear probe itself.

The alpha reported up front (0.5) is fixed before any result is seen; the whole sweep is shown.

Images, task after task (``--part images``): EfficientNet-Lite0 (at ``--image_size`` px, to fit
a 2-core CPU) fine-tuned on MNIST digits once (task A; 2,000 digits), then that model fine-tuned
on Fashion-MNIST (task B; ``--size`` images) with each method below, every other setting the
same. Forgetting is hftl's own measurement (``--reference_*``): the digits model's accuracy on
the MNIST asset's test split before task B, and after it, with the trained backbone under the
digits head. Task B's accuracy is on the Fashion-MNIST asset's test split. The guards' strengths
are fixed here before any run (each guard's default and one 10x stronger setting for the two
penalties); none is tuned on a test split.

Writes results.json, results.md and a plot under --output_dir.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hftl.outputs import describe_hardware
from hftl.testing import load_script

ROOT = Path(__file__).resolve().parents[1]
study = load_script(ROOT / "scripts" / "transfer_study.py")  # its model copies and run flags
quiet_run = study.quiet_run
OOD_SETS = ("amazon", "tweets", "nyt")
TEXT_METHODS = {
    "full": ["--strategy", "full", "--head_lr_multiplier", "10"],
    "lp_ft": ["--strategy", "lp_ft", "--head_lr_multiplier", "1"],
}
HEADLINE_ALPHA = 0.5
# the label of a VADER text in the Rotten Tomatoes model's words
VADER_TO_RT = {"positive": "fresh", "negative": "rotten"}


def text_flags(method: str, seed: int, size: int, epochs: float, output_dir: Path) -> list[str]:
    return [
        "--model_name_or_path", "hftl:minilm",
        "--train_file", "hftl:rotten-tomatoes/train.csv",
        "--validation_file", "hftl:rotten-tomatoes/validation.csv",
        "--max_train_samples", str(size), "--max_seq_length", "96",
        *TEXT_METHODS[method],
        "--layer_decay", "0.85", "--learning_rate", "8e-5", "--warmup_steps", "0.1",
        "--weight_decay", "0.01", "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64",
        "--guards", "wise_ft", "--wise_ft_alpha", "1", "--feature_cache_dir", "memory",
        *quiet_run(seed, output_dir),
    ]  # fmt: skip


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def text_eval_sets(ood_rows: int) -> dict[str, list[tuple[str, str]]]:
    """{name: [(text, label)]}: the Rotten Tomatoes test split and a fixed sample of each VADER
    set (labels in the Rotten Tomatoes model's words), without texts of the Rotten Tomatoes corpus."""
    from hftl.assets import fetch

    rotten = fetch("rotten-tomatoes")
    corpus = set()
    for split in ("train", "validation", "test"):
        with open(rotten / f"{split}.csv", newline="") as handle:
            corpus |= {_normalised(row["text"]) for row in csv.DictReader(handle)}
    with open(rotten / "test.csv", newline="") as handle:
        sets = {"rt_test": [(row["text"], row["label"]) for row in csv.DictReader(handle)]}
    vader = fetch("vader-sentiment")
    for name in OOD_SETS:
        with open(vader / f"{name}.csv", newline="") as handle:
            rows = [(row["text"], VADER_TO_RT[row["label"]]) for row in csv.DictReader(handle)
                    if _normalised(row["text"]) not in corpus]  # fmt: skip
        random.Random(f"ood-{name}").shuffle(rows)
        sets[name] = rows[:ood_rows]
    return sets


@torch.inference_mode()
def accuracy(model, tokenizer, rows: list[tuple[str, str]], max_length: int = 96) -> float:
    """Share of ``rows`` whose label the model predicts (batches of similar length)."""
    model.eval()
    label2id = model.config.label2id
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    right = 0
    for start in range(0, len(order), 64):
        batch = [rows[i] for i in order[start : start + 64]]
        inputs = tokenizer([text for text, _ in batch], truncation=True, max_length=max_length,
                           padding=True, return_tensors="pt")  # fmt: skip
        predicted = model(**inputs).logits.argmax(-1).tolist()
        right += sum(p == label2id[label] for p, (_, label) in zip(predicted, batch, strict=True))
    return right / len(rows)


def sweep(trainer, run_dir: Path, sets: dict, alphas: list[float]) -> list[dict]:
    """Accuracy on every set at every alpha, mixing the run's two end points in memory."""
    from safetensors.torch import load_file

    from hftl.guards.wise_ft import mix

    model = trainer.accelerator.unwrap_model(trainer.model)
    tokenizer = trainer.processing_class
    start = load_file(run_dir / "wise_ft" / "start.safetensors")
    fine_tuned = load_file(run_dir / "wise_ft" / "fine_tuned.safetensors")
    info = json.loads((run_dir / "run_info.json").read_text())["training"]["wise_ft"]
    keep = set(info["head_tensors"])
    points = []
    for alpha in alphas:
        model.load_state_dict(mix(start, fine_tuned, alpha, keep))
        scores = {name: round(accuracy(model, tokenizer, rows), 4) for name, rows in sets.items()}
        scores["ood_mean"] = round(statistics.mean(scores[name] for name in OOD_SETS), 4)
        points.append({"alpha": alpha, **scores})
    return points


def run_text(args, out: Path) -> tuple[list[dict], dict[str, int]]:
    """Every (seed, method) run and its WiSE-FT sweep: the rows, and the evaluation sets' sizes."""
    from hftl.testing import load_script

    recipe = load_script(ROOT / "recipes" / "sentiment.py")
    sets = text_eval_sets(args.ood_rows)
    sizes = {name: len(rows) for name, rows in sets.items()}
    print("evaluation sets:", sizes, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="hftl-forgetting-"))
    rows = []
    try:
        for seed in args.seeds:
            for method in args.methods:
                run_dir = workdir / f"{method}-{seed}"
                started = time.perf_counter()
                _, trainer = recipe.main(text_flags(method, seed, args.size, args.epochs, run_dir))
                train_seconds = time.perf_counter() - started
                for point in sweep(trainer, run_dir, sets, args.alphas):
                    row = {"seed": seed, "method": method, **point,
                           "train_seconds": round(train_seconds, 1)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows, sizes


def summarise_text(rows: list[dict]) -> dict:
    """Mean, min and max over seeds of every score, per (method, alpha)."""
    keys = ("rt_test", *OOD_SETS, "ood_mean")
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["alpha"]), []).append(row)
    summary = {}
    for (method, alpha), group in groups.items():
        summary[f"{method}@{alpha:g}"] = {
            "method": method, "alpha": alpha, "seeds": len(group),
            **{k: [round(statistics.mean(r[k] for r in group), 4), min(r[k] for r in group),
                   max(r[k] for r in group)] for k in keys},
        }  # fmt: skip
    return summary


def text_verdicts(summary: dict) -> list[str]:
    """The issue's targets, checked on the means: out of distribution above full fine-tuning,
    in distribution within 0.5 points of it or better."""
    full = summary.get("full@1")
    if full is None:
        return []
    lines = []
    candidates = [("LP-FT", "lp_ft@1"), (f"WiSE-FT of full, alpha {HEADLINE_ALPHA:g}",
                  f"full@{HEADLINE_ALPHA:g}"), (f"WiSE-FT of LP-FT, alpha {HEADLINE_ALPHA:g}",
                  f"lp_ft@{HEADLINE_ALPHA:g}")]  # fmt: skip
    for label, key in candidates:
        if key not in summary:
            continue
        point = summary[key]
        ood = (point["ood_mean"][0] - full["ood_mean"][0]) * 100
        in_dist = (point["rt_test"][0] - full["rt_test"][0]) * 100
        held = ood > 0 and in_dist >= -0.5
        lines.append(
            f"{label}: out of distribution {ood:+.1f} points, in distribution {in_dist:+.1f} "
            f"points against full fine-tuning: target {'met' if held else 'not met'}"
        )
    return lines


def report_head(title: str, meta: dict) -> list[str]:
    """The first lines of a results.md: title, provenance, command, hardware and time."""
    return [
        f"# Forgetting study, {title}",
        "",
        "Generated by `scripts/forgetting_study.py`; do not edit by hand.",
        "",
        f"- command: `{meta['command']}`",
        f"- hardware: {meta['hardware']}; {meta['date']}; {meta['wall_time_minutes']} min in all",
    ]


def write_text_report(rows: list[dict], meta: dict, out: Path) -> None:
    summary = summarise_text(rows)
    lines = [
        *report_head("text: in and out of distribution", meta),
        f"- training: {meta['size']} Rotten Tomatoes snippets, {meta['epochs']} epochs, seeds "
        f"{meta['seeds']}; evaluation sets (rows): {meta['eval_rows']}",
        "",
        "Accuracy, mean over seeds [min-max]. `full@1` is plain full fine-tuning, `lp_ft@1` LP-FT, "
        "`lp_ft@0` the linear probe alone; other alphas are WiSE-FT mixtures of that run's start "
        "and end.",
        "",
        "| method @ alpha | Rotten Tomatoes test | Amazon | tweets | NYT | out of distribution, mean |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(summary, key=lambda k: (summary[k]["method"], summary[k]["alpha"])):
        point = summary[key]
        cells = [f"{v[0]:.3f} [{v[1]:.3f}-{v[2]:.3f}]"
                 for v in (point[k] for k in ("rt_test", *OOD_SETS, "ood_mean"))]  # fmt: skip
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    lines += [f"- {line}" for line in text_verdicts(summary)] or ["- (no full fine-tuning run)"]
    lines += ["", "![in vs out of distribution](id_vs_ood.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot_text(summary, out / "id_vs_ood.png")


def plot_text(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for method, marker in (("full", "o"), ("lp_ft", "s")):
        points = sorted((p for p in summary.values() if p["method"] == method),
                        key=lambda p: p["alpha"])  # fmt: skip
        if not points:
            continue
        x = [p["rt_test"][0] for p in points]
        y = [p["ood_mean"][0] for p in points]
        axes.plot(x, y, marker=marker, label=f"{method}: WiSE-FT alpha 0 -> 1")
        for p in points:
            axes.annotate(f"{p['alpha']:g}", (p["rt_test"][0], p["ood_mean"][0]), fontsize=7,
                          textcoords="offset points", xytext=(3, 3))  # fmt: skip
    axes.set_xlabel("Rotten Tomatoes test accuracy (in distribution)")
    axes.set_ylabel("out of distribution (Amazon, tweets, NYT mean)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


IMAGE_METHODS = {  # flags on top of the shared ones; weight decay 0.01 unless replaced by L2-SP
    "plain": [],
    "l2sp": ["--guards", "l2sp", "--weight_decay", "0"],
    "l2sp_x10": ["--guards", "l2sp", "--weight_decay", "0", "--l2sp_alpha", "1.0"],
    "ewc": ["--guards", "ewc"],
    "ewc_x10": ["--guards", "ewc", "--ewc_lambda", "10"],
    "lwf": ["--guards", "lwf"],
    "replay": ["--guards", "replay"],
    "ewc+replay": ["--guards", "ewc", "replay"],
    "lwf+replay": ["--guards", "lwf", "replay"],
    "wise_ft_0.5": ["--guards", "wise_ft", "--wise_ft_alpha", "0.5"],
}


def image_flags(model: str, train: str, test: str, size: int, epochs: float, seed: int,
                output_dir: Path) -> list[str]:  # fmt: skip
    return [
        "--model_name_or_path", model, "--train_dir", train, "--validation_dir", test,
        "--augmentation", "false", "--max_train_samples", str(size),
        "--strategy", "full", "--layer_decay", "0.8", "--head_lr_multiplier", "10",
        "--learning_rate", "1e-3", "--weight_decay", "0.01", "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64",
        *quiet_run(seed, output_dir),
    ]  # fmt: skip


def run_images(args, out: Path) -> list[dict]:
    recipe = load_script(ROOT / "recipes" / "image_classification.py")
    workdir = Path(tempfile.mkdtemp(prefix="hftl-forgetting-"))
    rows = []
    try:
        model = study.image_model_at(args.image_size, workdir)
        digits = workdir / "digits"
        started = time.perf_counter()
        report, _ = recipe.main(
            image_flags(
                model, "hftl:mnist/train", "hftl:mnist/test", args.task_a_size, 2, 0, digits
            )
        )
        print(json.dumps({"task_a": "digits", "accuracy": round(report["accuracy"], 4),
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)  # fmt: skip
        reference = ["--reference_train_dir", "hftl:mnist/train",
                     "--reference_validation_dir", "hftl:mnist/test"]  # fmt: skip
        for seed in args.seeds:
            for method in args.image_methods:
                run_dir = workdir / f"{method}-{seed}"
                flags = image_flags(str(digits), "hftl:fashion-mnist/train", "hftl:fashion-mnist/test",
                                    args.size, args.epochs, seed, run_dir)  # fmt: skip
                started = time.perf_counter()
                report, _ = recipe.main([*flags, *reference, *IMAGE_METHODS[method]])
                info = json.loads((run_dir / "run_info.json").read_text())["reference"]
                row = {
                    "seed": seed, "method": method, "fashion": round(report["accuracy"], 4),
                    "digits_before": info["accuracy_before"], "digits_after": info["accuracy_after"],
                    "forgetting": info["forgetting"], "seconds": round(time.perf_counter() - started, 1),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def summarise_images(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["method"], []).append(row)
    return {
        method: {"seeds": len(group), **{k: [round(statistics.mean(r[k] for r in group), 4),
                                              min(r[k] for r in group), max(r[k] for r in group)]
                                         for k in ("fashion", "digits_after", "forgetting")}}
        for method, group in groups.items()
    }  # fmt: skip


def image_verdict(summary: dict) -> list[str]:
    """The issue's target: the best guard at least halves plain fine-tuning's forgetting and
    costs at most 1 point on the new task."""
    plain = summary.get("plain")
    if plain is None:
        return []
    lines = []
    for method, point in summary.items():
        if method == "plain":
            continue
        kept = point["forgetting"][0] <= plain["forgetting"][0] / 2
        cost = (plain["fashion"][0] - point["fashion"][0]) * 100
        lines.append(
            f"`{method}`: forgetting {point['forgetting'][0] * 100:.1f} points against plain's "
            f"{plain['forgetting'][0] * 100:.1f} ({'halved' if kept else 'not halved'}), "
            f"Fashion-MNIST {-cost:+.1f} points: "
            f"{'meets' if kept and cost <= 1 else 'misses'} the target"
        )
    return lines


def write_image_report(rows: list[dict], meta: dict, out: Path) -> None:
    summary = summarise_images(rows)
    lines = [
        *report_head("images: digits, then fashion", meta),
        f"- task A: EfficientNet-Lite0 at {meta['image_size']} px fine-tuned on {meta['task_a_size']} MNIST digits "
        f"(test accuracy {meta['digits_accuracy']:.4f}); task B: {meta['size']} Fashion-MNIST "
        f"images, {meta['epochs']} epochs, seeds {meta['seeds']}",
        "",
        "Mean over seeds [min-max]. Forgetting: digits test accuracy before task B minus after it "
        "(the digits head on the trained backbone).",
        "",
        "| method | Fashion-MNIST test | digits after | forgetting |",
        "|---|---|---|---|",
    ]
    for method, point in summary.items():
        cells = [f"{v[0]:.3f} [{v[1]:.3f}-{v[2]:.3f}]"
                 for v in (point[k] for k in ("fashion", "digits_after", "forgetting"))]  # fmt: skip
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    lines += ["", "## Target", ""] + [f"- {line}" for line in image_verdict(summary)]
    lines += ["", "![forgetting vs new-task accuracy](forgetting.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot_images(summary, out / "forgetting.png")


def plot_images(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for method, point in summary.items():
        axes.scatter(point["fashion"][0], point["forgetting"][0] * 100)
        axes.annotate(method, (point["fashion"][0], point["forgetting"][0] * 100), fontsize=7,
                      textcoords="offset points", xytext=(3, 3))  # fmt: skip
    axes.set_xlabel("Fashion-MNIST test accuracy (the new task)")
    axes.set_ylabel("digits accuracy lost (points)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["text", "images"], default="text")
    parser.add_argument("--quick", action="store_true", help="small data, one seed")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(TEXT_METHODS), choices=TEXT_METHODS)
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--image_methods", nargs="+", choices=IMAGE_METHODS,
                        help="default: all (--quick: plain and ewc)")  # fmt: skip
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--size", type=int, help="training examples (text 2000, images 1000)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--ood_rows", type=int, default=1000, help="rows of each VADER set")
    parser.add_argument("--output_dir", help="default: docs/forgetting_study/<part>")
    parser.add_argument("--report_only", action="store_true", help="rewrite from results.json")
    args = parser.parse_args(argv)
    out = Path(args.output_dir or ROOT / "docs" / "forgetting_study" / args.part)
    write = write_text_report if args.part == "text" else write_image_report
    if args.report_only:
        saved = json.loads((out / "results.json").read_text())
        write(saved["runs"], saved["meta"], out)
        return saved["runs"]
    args.size = args.size or (2000 if args.part == "text" else 1000)
    args.task_a_size = 2000  # digits for the model the image part starts from
    if args.quick:
        args.seeds, args.size, args.epochs, args.ood_rows = [0], 200, 1, 200
        args.task_a_size = 300
        args.image_methods = args.image_methods or ["plain", "ewc"]
    args.image_methods = args.image_methods or list(IMAGE_METHODS)
    logging.getLogger("hftl").setLevel(logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.part == "images":
        rows = run_images(args, out)
        extra = {"image_size": args.image_size, "task_a_size": args.task_a_size,
                 "digits_accuracy": rows[0]["digits_before"] if rows else None}  # fmt: skip
        summarise, plot_name = summarise_images, "forgetting.png"
    else:
        rows, sizes = run_text(args, out)
        extra = {"eval_rows": sizes}
        summarise, plot_name = summarise_text, "id_vs_ood.png"
    meta = {
        "command": "python scripts/forgetting_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "hardware": describe_hardware(), "date": time.strftime("%Y-%m-%d"),
        "wall_time_minutes": round((time.perf_counter() - started) / 60, 1),
        "size": args.size, "epochs": args.epochs, "seeds": args.seeds, **extra,
        "summary": summarise(rows),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    write(rows, meta, out)
    print(f"wrote {out}: results.json, results.md, {plot_name}")
    return rows


if __name__ == "__main__":
    main()
