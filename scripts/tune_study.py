"""Does `hftl tune` pay? The tuned run against the recipe's defaults and against `hftl advise`'s
values, on real data of each modality, offline, tested on data the tuning never saw.

    python scripts/tune_study.py                       # the three cases (about 85 min, 2 cores)
    python scripts/tune_study.py --cases image audio   # some of them
    python scripts/tune_study.py --quick               # a minutes-long check of the script
    python scripts/tune_study.py --report_only         # rewrite docs/tune_study.md from results

Each case is one of the offline demo's configs (recipes/configs/demo_*.yaml), with a test split
added: MNIST digits with EfficientNet-Lite0's frozen features (tuned on the validation folder,
tested on 2,000 of the test folder), Rotten Tomatoes with MiniLM fully fine-tuned (validation.csv
/ test.csv), and the spoken Mandarin initials with Whisper tiny.en's frozen encoder (tuned on a
10% hold-out of the training speaker, tested on the other speaker). Three arms, each trained with
the same seeds and tested once per seed:

- defaults: the config as it is (the recipe's values; what it leaves out, hftl's defaults);
- advise: the config with `hftl advise`'s starting values for its strategy (learning rate, batch
  size, epochs, and the strategy's own: linear probe, head multiplier, layer decay);
- tuned: `hftl tune --n_trials N` on the config (seed 42; its first trial is advise's learning
  rate), then the config with the best trial's values.

The compute is stated as minutes: the tuning study's, and each arm's runs. The feature cache is
shared by all runs of a case (as it is for a user): the first run that needs features extracts
them. Writes docs/tune_study/results.json and docs/tune_study.md.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hftl.outputs import describe_hardware  # noqa: E402

CASES = {
    "image": {
        "task": "image-classification",
        "config": "demo_image_efficientnet_lite0.yaml",
        "set": {"validation_dir": "hftl:mnist/validation"},
        "drop": [],
        "test": ["--test_dir", "hftl:mnist/test", "--max_predict_samples", "2000"],
        "trials": 20,
        "data": "MNIST digits: 1,000 training images, the validation folder (519) for tuning, "
        "2,000 test images",
    },
    "text": {
        "task": "text-classification",
        "config": "demo_sentiment_minilm.yaml",
        "set": {},
        "drop": [],
        "test": ["--test_file", "hftl:rotten-tomatoes/test.csv"],
        "trials": 8,
        "data": "Rotten Tomatoes: 2,000 training reviews, validation.csv (1,066) for tuning, "
        "test.csv (1,066)",
    },
    "audio": {
        "task": "audio-classification",
        "config": "demo_audio_whisper_tiny.yaml",
        "set": {},
        "drop": ["validation_dir"],  # tuning holds out 10% of the training speaker instead
        "test": ["--test_dir", "hftl:gcin-voice/initial/validation"],
        "trials": 20,
        "data": "spoken Mandarin initials (gcin-voice, 24 classes): one speaker's 1,209 clips "
        "(10% held out for tuning), tested on the other speaker's 1,169",
    },
}
SEEDS = (42, 43, 44)
QUIET = ["--disable_tqdm", "true", "--report_to", "none"]


def case_config(case: dict, workdir: Path, quick: bool) -> Path:
    """The case's config (the installed demo config with the case's changes) as a file."""
    from hftl.config import config_file

    config = yaml.safe_load(config_file(case["config"]).read_text())
    config.update(case["set"])
    for key in case["drop"]:
        config.pop(key, None)
    if quick:
        config["max_train_samples"] = 200
        config["num_train_epochs"] = 1
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def advised_values(task_name: str, config: Path, cache: Path, workdir: Path) -> dict:
    """hftl advise's starting values for the config's strategy, on the config's model and data."""
    from hftl.advise import AdviseArguments, advise
    from hftl.advise.rules import starting_values
    from hftl.run import parse_run_config
    from hftl.tasks import task_of

    task = task_of(task_name)
    model_args, data_args, task_args, training_args, _ = parse_run_config(
        task, ["--config", str(config), "--output_dir", str(workdir / "advise")]
    )
    advice = advise(task, data_args, task_args, AdviseArguments(
        models=[model_args.model_name_or_path], seed=42, feature_cache_dir=str(cache),
        output_dir=str(workdir), disable_tqdm=True))  # fmt: skip
    settings, _ = starting_values(training_args.strategy, advice.profile, advice.scores[0], task)
    return settings


def train(task_name: str, argv: list[str], out: Path) -> dict:
    """One run with the test split: validation and test accuracy, and its minutes."""
    from hftl.run import run_task

    started = time.perf_counter()
    report, _ = run_task(task_name, [*argv, "--output_dir", str(out), "--overwrite_output_dir",
                                     "true", *QUIET], prog="tune_study")  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    info = json.loads((out / "run_info.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"validation": round(report["accuracy"], 4),
            "test": round(info["test"]["metrics"]["accuracy"], 4),
            "minutes": round(minutes, 2)}  # fmt: skip


def flags(values: dict) -> list[str]:
    return [part for key, value in values.items() for part in (f"--{key}", str(value))]


def run_case(name: str, args, workdir: Path) -> dict:
    from hftl.tune import tune

    case = CASES[name]
    work = workdir / name
    work.mkdir(parents=True)
    cache = work / "features"
    config = case_config(case, work, args.quick)
    base = ["--config", str(config), "--feature_cache_dir", str(cache)]
    trials = 3 if args.quick else case["trials"]

    started = time.perf_counter()
    results = tune(case["task"], [*base, *QUIET, "--output_dir", str(work / "tune"),
                                  "--n_trials", str(trials), "--seed", "42"],
                   prog="tune_study")  # fmt: skip
    tune_minutes = (time.perf_counter() - started) / 60
    trials_md = (work / "tune" / "trials.md").read_text()
    best = results["best"]["values"]

    advised = advised_values(case["task"], config, cache, work)
    arms = {"defaults": {}, "advise": advised, "tuned": best}
    runs = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, values in arms.items():
            argv = [*base, *flags(values), "--seed", str(seed), "--do_predict", *case["test"]]
            runs[arm].append({"seed": seed, **train(case["task"], argv, work / arm)})
            print(name, arm, runs[arm][-1], flush=True)
    defaults = yaml.safe_load(config.read_text())
    return {
        "case": name, "data": case["data"], "config": case["config"],
        "strategy": defaults["strategy"],
        # the config's own values of what the other arms set (the rest: hftl's defaults)
        "defaults": {k: defaults[k] for k in sorted(set(best) | set(advised)) if k in defaults},
        "advise": advised, "tuned": best, "tuning": {
            "trials": results["trials"], "minutes": round(tune_minutes, 2),
            "best_trial": results["best"]["trial"], "best_validation": results["best"]["value"],
            "table": trials_md,
        },
        "runs": runs,
    }  # fmt: skip


def _mean(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _values(values: dict) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


def report(results: dict) -> str:
    lines = [
        "# Does `hftl tune` pay?",
        "",
        f"- Command: `{results['command']}`; {results['hardware']}; seeds "
        f"{', '.join(map(str, results['seeds']))}.",
        "",
        " ".join(__doc__.split("\n\n")[2].split()),
        "",
        *(
            f"- {' '.join(item.split())}"
            for item in __doc__.split("\n\n")[3].removeprefix("- ").split("\n- ")
        ),
        "",
        " ".join(__doc__.split("\n\n")[4].split()),
        "",
    ]
    for case in results["cases"]:
        runs = case["runs"]
        lines += [
            f"## {case['case']}: {case['data']}",
            "",
            f"`{case['config']}`, strategy `{case['strategy']}`. Tuning: "
            f"{sum(case['tuning']['trials'].values())} trials "
            f"({', '.join(f'{v} {k}' for k, v in case['tuning']['trials'].items())}) in "
            f"{case['tuning']['minutes']:.1f} min; best trial {case['tuning']['best_trial']} "
            f"(validation accuracy {case['tuning']['best_validation']:.4f} at seed 42).",
            "",
            "| arm | values | validation accuracy | test accuracy | minutes per run | "
            "minutes in all (tuning included) |",
            "|---|---|---|---|---|---|",
        ]
        for arm in ("defaults", "advise", "tuned"):
            values = case[arm]
            per_run = statistics.mean(r["minutes"] for r in runs[arm])
            total = sum(r["minutes"] for r in runs[arm]) + (
                case["tuning"]["minutes"] if arm == "tuned" else 0
            )
            lines.append(
                f"| {arm} | {_values(values)} | {_mean(r['validation'] for r in runs[arm])} | "
                f"{_mean(r['test'] for r in runs[arm])} | {per_run:.2f} | {total:.1f} |"
            )
        test = {arm: statistics.mean(r["test"] for r in runs[arm]) for arm in runs}
        other = max(test["defaults"], test["advise"])
        spread = max(
            (statistics.stdev(r["test"] for r in runs[arm]) for arm in runs if len(runs[arm]) > 1),
            default=0.0,
        )
        gain = test["tuned"] - other
        verdict = (
            f"Tuned against the better of the other two arms: {100 * gain:+.1f} points of test "
            f"accuracy; the arms' standard deviation across seeds is up to {100 * spread:.1f} "
            "points, so "
            + ("tuning paid." if gain > spread else "tuning did not pay beyond the seeds' noise."
               if gain > 0 else "tuning did not pay.")
        )  # fmt: skip
        lines += ["", verdict, "", "<details><summary>the trials</summary>", "",
                  case["tuning"]["table"], "</details>", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--quick", action="store_true", help="200 examples, 1 epoch, 3 trials")
    parser.add_argument("--output_dir", default=str(ROOT / "docs" / "tune_study"))
    parser.add_argument("--report", default=str(ROOT / "docs" / "tune_study.md"))
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    if args.report_only:
        Path(args.report).write_text(report(json.loads((output / "results.json").read_text())))
        return 0
    logging.getLogger("hftl").setLevel(logging.WARNING)
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            cases.append(run_case(name, args, Path(folder)))
    command = "python scripts/tune_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": command.strip(), "hardware": describe_hardware(),
               "seeds": args.seeds, "quick": args.quick, "cases": cases}  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    Path(args.report).write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
