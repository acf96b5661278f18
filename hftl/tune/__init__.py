"""``hftl tune TASK --config run.yaml [--n_trials N | --budget_minutes M]``: the learning rate and
the strategy's knobs (:mod:`hftl.tune.space`) chosen by measurement on the validation split.

Each trial is a whole ``hftl train`` run of the same options with the trial's values (its own
directory under ``OUTPUT_DIR/trials``; nothing saved but its ``train.log``), scored by the final
model's validation metric (the run's ``metric_for_best_model``: the label shape's main metric
unless set). Optuna draws the values (TPE, seeded by ``--seed``) and stops a trial early when its
evaluations fall below the median of earlier trials at the same step (``--pruner``). The study
lives in ``OUTPUT_DIR/study.db`` (SQLite): the same command again continues it, a trial a killed
run left unfinished is run again, and ``--n_trials`` counts the study's finished trials. A new
study's first trial takes ``hftl advise``'s starting values.

Optuna is used directly rather than through ``Trainer.hyperparameter_search``: a trial here
changes what the trainer is built from (the strategy wraps and freezes the model, the layer-wise
groups follow ``layer_decay``; a frozen backbone's features come from the feature cache, so
``feature_extraction`` trials extract once and each further trial trains a head in seconds),
which ``hyperparameter_search``'s ``model_init`` and per-trial ``TrainingArguments`` changes do
not reach. Under ``accelerate launch`` every rank runs the same trial: the main process draws it
and decides on pruning, the others receive both.

Writes, in ``OUTPUT_DIR``: ``best.yaml`` (the run with the best trial's values; ``hftl train TASK
--config best.yaml`` runs it), ``trials.csv`` and ``trials.md`` (values, metric, seconds, state),
``learning_rate.png`` (the metric against the learning rate) and ``tune_results.json``.
``--train_best`` then trains the best configuration into ``OUTPUT_DIR/best``; ``--do_predict``
(which needs it) predicts the test split with that final model, once: trials never see test data.
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import TrainerCallback

from hftl.advise import AdviseArguments, advise
from hftl.advise.rules import starting_values
from hftl.assets import fetch_named, resolve
from hftl.config import count_blocks_from_config
from hftl.errors import ConfigError
from hftl.outputs import write_resolved_config
from hftl.run import parse_run_config, run_task
from hftl.run_files import FINISHED_RUN
from hftl.shapes import shape_of_metrics
from hftl.strategies import STRATEGIES
from hftl.tasks import task_of
from hftl.tune.report import record_trial, write_reports
from hftl.tune.space import needs_block_count, searched, suggest

logger = logging.getLogger(__name__)

STUDY_NAME = "hftl-tune"
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
BEST_CONFIG = "best.yaml"
BEST_DIR = "best"
DEFAULT_TRIALS = 20
PRUNERS = ("median", "successive_halving", "none")


@dataclass
class TuneArguments:
    """``hftl tune``'s own options (every other flag is the run's, as ``hftl train`` takes it)."""

    n_trials: int | None = None
    budget_minutes: float | None = None
    strategies: list[str] | None = None
    pruner: str = "median"
    advise: bool = True
    train_best: bool = False


def parse_tune_arguments(argv: list[str], prog: str) -> tuple[TuneArguments, list[str]]:
    """(``hftl tune``'s options, the run's flags)."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    parser.add_argument("--n_trials", type=int)
    parser.add_argument("--budget_minutes", type=float)
    parser.add_argument("--strategies", nargs="+")
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--no_advise", dest="advise", action="store_false")
    parser.add_argument("--train_best", action="store_true")
    known, rest = parser.parse_known_args(argv)
    arguments = TuneArguments(**vars(known))
    if arguments.n_trials is not None and arguments.n_trials < 1:
        raise ConfigError(f"--n_trials {arguments.n_trials}: must be >= 1")
    if arguments.budget_minutes is not None and arguments.budget_minutes <= 0:
        raise ConfigError(f"--budget_minutes {arguments.budget_minutes:g}: must be > 0")
    if arguments.n_trials is None and arguments.budget_minutes is None:
        arguments.n_trials = DEFAULT_TRIALS
    if arguments.pruner not in PRUNERS:
        raise ConfigError(f"--pruner {arguments.pruner}: choose one of {', '.join(PRUNERS)}")
    for name in arguments.strategies or []:
        if name not in STRATEGIES:
            raise ConfigError(f"--strategies: {STRATEGIES.unknown(name)}")
    return arguments, rest


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "hftl tune needs Optuna: pip install 'hftl[tune]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hftl logs each trial itself
    return optuna


def tune(task, argv: list[str], *, prog: str) -> dict:
    """Run (or continue) the study of ``task`` with the run options in ``argv``; returns what
    ``tune_results.json`` holds."""
    optuna = import_optuna()
    task = task_of(task)
    tune_args, run_argv = parse_tune_arguments(argv, prog)
    arguments = parse_run_config(task, run_argv, prog=prog)
    model_args, data_args, task_args, training_args, reference_args = arguments
    strategies = tune_args.strategies or [training_args.strategy]
    for flag, given in (("--do_predict", training_args.do_predict),
                        ("--push_to_hub", training_args.push_to_hub)):  # fmt: skip
        if given and not tune_args.train_best:
            raise ConfigError(
                f"hftl tune: {flag} applies to the final model of the best values (trials never "
                "see test data and are not pushed): add --train_best"
            )
    output = Path(training_args.output_dir)
    main, world_size = training_args.process_index == 0, training_args.world_size

    def share(value):
        return _share(value, world_size)

    with training_args.main_process_first(desc="fetching hftl: assets"):
        fetch_named(model_args, data_args, reference_args)
    num_blocks = None
    if needs_block_count(strategies):
        model = resolve(model_args.model_name_or_path)
        num_blocks = count_blocks_from_config(model, grouping=training_args.layer_grouping)
        if num_blocks is None:
            raise ConfigError(
                f"hftl tune: cannot read the number of blocks of {model_args.model_name_or_path} "
                "from its config (needed for num_trainable_layers' range)"
            )

    study, fresh = None, None
    if main:
        output.mkdir(parents=True, exist_ok=True)
        base = _resolved_config(output, arguments)
        study = _open_study(optuna, output, tune_args, strategies, training_args.seed, base)
        fresh = not study.trials
    if share(fresh) and tune_args.advise:  # every rank: advise's extraction is split across them
        first = _advised(task, arguments, strategies, output)
        if main:
            study.enqueue_trial(first, user_attrs={"source": "hftl advise"})
            logger.info("tune: trial 0 takes hftl advise's values %s", _shown(first))

    trial_argv = list(run_argv)
    if training_args.eval_strategy == "no":  # pruning compares evaluations during the trials
        trial_argv += ["--eval_strategy", "epoch"]
    started = time.monotonic()
    while True:
        order, trial = None, None
        if main and _budget_left(optuna, study, tune_args, started):
            trial = study.ask()
            order = (trial.number, suggest(trial, strategies, task, num_blocks))
            trial_dir = output / TRIALS_DIR / f"trial-{trial.number:03d}"
            if trial_dir.exists():  # from a study started over in this directory
                shutil.rmtree(trial_dir)
        order = share(order)
        if order is None:
            break
        number, values = order
        _run_trial(optuna, task, trial_argv, output, number, values, study, trial, share, prog)

    results = None
    if main:
        results = write_reports(study, output, _best_config(output, base))
        logger.info("tune: %s", results["summary"])
    results = share(results)
    if results["best"] is None:
        raise ConfigError(
            f"hftl tune: no trial of the study in {output / STUDY_FILE} finished; raise "
            "--n_trials or --budget_minutes"
        )
    if tune_args.train_best:
        best = [*_flags(results["best"]["values"]), "--output_dir", str(output / BEST_DIR)]
        if (output / BEST_DIR / FINISHED_RUN).exists():  # a finished study run again: retrain
            best += ["--overwrite_output_dir", "true"]  # (an interrupted one resumes)
        run_task(task, [*run_argv, *best], prog=f"{prog} (best)")
    return results


def run_or_tune(task, argv: list[str] | None = None, *, prog: str):
    """A recipe's entry point: the run, or with ``--tune`` (and ``hftl tune``'s flags) the study
    of the recipe's task: ``python recipes/sentiment.py --config run.yaml --tune --n_trials 20``
    is ``hftl tune text-classification --config run.yaml --n_trials 20``. Returns
    :func:`~hftl.run.run_task`'s (report, trainer), or :func:`tune`'s results."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--tune" not in argv:
        return run_task(task, argv, prog=prog)
    argv.remove("--tune")
    return tune(task, argv, prog=f"{prog} --tune")


def _run_trial(optuna, task, run_argv, output, number, values, study, trial, share, prog):
    """One trial, on every rank; the main process tells the study how it ended."""
    import torch

    trial_dir = output / TRIALS_DIR / f"trial-{number:03d}"
    argv = [*run_argv, *_flags(values), "--output_dir", str(trial_dir), "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--push_to_hub", "false", "--report_to", "none",
            "--disable_tqdm", "true"]  # fmt: skip
    reporter = TrialReport(optuna, trial, share)
    started = time.perf_counter()
    try:
        metrics, trainer = run_task(task, argv, prog=f"{prog} (trial {number})",
                                    callbacks=[reporter], evaluate_only=True)  # fmt: skip
    except optuna.TrialPruned:
        if study is not None:
            record_trial(trial, values, time.perf_counter() - started, reporter)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        logger.info("tune: trial %d %s: pruned at step %s (%s)", number, _shown(values),
                    reporter.step, reporter.describe())  # fmt: skip
        return
    except KeyboardInterrupt:  # as a kill: the same command runs these values again
        if study is not None:
            _retry(optuna, study, number, trial.params)
        raise
    except BaseException:
        if study is not None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    reporter.final(metrics, trainer.args)
    del trainer
    if study is not None:
        record_trial(trial, values, time.perf_counter() - started, reporter)
        study.tell(trial, reporter.score)
    logger.info("tune: trial %d %s -> %s (%.0f s)", number, _shown(values), reporter.describe(),
                time.perf_counter() - started)  # fmt: skip


class TrialReport(TrainerCallback):
    """Reports each evaluation's metric to the trial and stops it when the pruner says so (the
    main process decides; every rank stops). The final evaluation, after training, is the trial's
    result, not a report."""

    def __init__(self, optuna, trial, share):
        self.optuna, self.trial, self.share = optuna, trial, share
        self.metric: str | None = None
        self.value: float | None = None
        self.score: float | None = None
        self.step: int | None = None
        self.training_done = False

    def _read(self, metrics: dict, args) -> None:
        """The run's metric_for_best_model, else the main metric of the label shape whose
        metrics the evaluation holds, else the loss."""
        name, greater = args.metric_for_best_model, args.greater_is_better
        if name is None:
            shape = shape_of_metrics(metrics)
            name = shape.default_metric if shape is not None else "loss"
            greater = shape is not None and name not in shape.lower_is_better
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise ConfigError(
                f"hftl tune: the evaluation has no {key} (it has {', '.join(sorted(metrics))}); "
                "set --metric_for_best_model to one of them"
            )
        if greater is None:
            greater = not key.endswith("loss")
        self.metric, self.value = key.removeprefix("eval_"), float(metrics[key])
        self.score = self.value if greater else -self.value

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.training_done or not metrics:
            return
        self._read(metrics, args)
        self.step = state.global_step
        prune = False
        if self.trial is not None:
            self.trial.report(self.score, state.global_step)
            prune = self.trial.should_prune()
        if self.share(prune):
            raise self.optuna.TrialPruned(f"pruned at step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        self.training_done = True

    def final(self, metrics: dict, args) -> None:
        self._read(metrics, args)

    def describe(self) -> str:
        return "no evaluation" if self.value is None else f"{self.metric} {self.value:.4f}"


def _budget_left(optuna, study, tune_args: TuneArguments, started: float) -> bool:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = len(study.get_trials(deepcopy=False, states=states))
    if tune_args.n_trials is not None and finished >= tune_args.n_trials:
        return False
    elapsed = time.monotonic() - started
    return tune_args.budget_minutes is None or elapsed < tune_args.budget_minutes * 60


def _open_study(optuna, output: Path, tune_args, strategies, seed: int, base: dict):
    """The study in ``output`` (new, or continued where its options are the same)."""
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }[tune_args.pruner]()
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=f"sqlite:///{(output / STUDY_FILE).resolve()}",
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner,
        load_if_exists=True,
    )  # fmt: skip
    options = {"run": {k: v for k, v in base.items() if k != "output_dir"},
               "strategies": strategies}  # fmt: skip
    stored = study.user_attrs.get("options")
    if stored is None:
        study.set_user_attr("options", options)
    elif stored != options:
        changed = sorted(
            k for k in set(stored["run"]) | set(options["run"])
            if stored["run"].get(k) != options["run"].get(k)
        ) + ["--strategies"] * (stored["strategies"] != strategies)  # fmt: skip
        raise ConfigError(
            f"{output / STUDY_FILE}: the study there was run with other options ({', '.join(changed)}"
            "); continue it with the same ones, or choose another --output_dir"
        )
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:  # left by a killed run: failed, and its values tried again
        _retry(optuna, study, trial.number, trial.params)
        logger.info("tune: trial %d was cut short; its values run again", trial.number)
    if study.trials:
        logger.info("tune: continuing the study in %s (%d trials so far)", output / STUDY_FILE,
                    len(study.trials))  # fmt: skip
    return study


def _retry(optuna, study, number: int, params: dict) -> None:
    """A trial cut short (killed, or Ctrl-C): failed, and its values queued to run again."""
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"retry_of": number})


def _resolved_config(output: Path, arguments) -> dict:
    """The run options every trial shares, resolved (written to ``tune_config.yaml``)."""
    path = output / "tune_config.yaml"
    write_resolved_config(path, *arguments)
    return yaml.safe_load(path.read_text())


def _best_config(output: Path, base: dict):
    """A function writing ``best.yaml``: the run's resolved options (``base``) with the best
    values (called by the report)."""

    def write(values: dict) -> Path:
        config = {**base, **values, "output_dir": str(output / BEST_DIR)}
        path = output / BEST_CONFIG
        path.write_text(
            "# The best trial of `hftl tune` (trials.md); train it with\n"
            "#   hftl train <task> --config best.yaml\n" + yaml.safe_dump(config, sort_keys=False)
        )
        return path

    return write


def _advised(task, arguments, strategies: list[str], output: Path) -> dict:
    """``hftl advise``'s starting values for the searched options (its strategy where searched)."""
    model_args, data_args, task_args, training_args, _ = arguments
    advice = advise(
        task, data_args, task_args,
        AdviseArguments(models=[model_args.model_name_or_path], seed=training_args.seed,
                        feature_cache_dir=training_args.feature_cache_dir,
                        output_dir=str(output), disable_tqdm=True,
                        use_cpu=training_args.use_cpu),
    )  # fmt: skip
    strategy = advice.recommendation.strategy
    strategy = strategy if strategy in strategies else strategies[0]
    settings, _ = starting_values(strategy, advice.profile, advice.scores[0], task)
    names = searched(strategies)
    return {option: value for option, value in settings.items() if option in names}


def _flags(values: dict) -> list[str]:
    return [part for option, value in values.items() for part in (f"--{option}", str(value))]


def _shown(values: dict) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


def _share(value, world_size: int):
    """The main process's ``value``, on every process."""
    if world_size <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


__all__ = ["TuneArguments", "parse_tune_arguments", "run_or_tune", "tune"]
