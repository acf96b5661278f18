"""What ``hftl tune`` searches: the learning rate (log scale, around the strategy's starting rate
on the task) and weight decay for every strategy, each strategy's own knobs
(``Strategy.knobs``), and the strategy itself where several are given."""

from __future__ import annotations

from hftl.strategies import STRATEGIES
from hftl.strategies.base import Knob

LR_SPAN = 10.0  # the learning rate is searched in [base / LR_SPAN, base * LR_SPAN], log scale
WEIGHT_DECAY = Knob(0.0, 0.1)


def suggest(trial, strategies: list[str], task, num_blocks: int | None) -> dict:
    """One trial's options (``{option: value}``, flags of ``hftl train``), drawn by ``trial`` (an
    ``optuna.Trial``). ``num_blocks``: the model's, for knobs that go up to it."""
    name = strategies[0]
    if len(strategies) > 1:
        name = trial.suggest_categorical("strategy", strategies)
    strategy = STRATEGIES.get(name)
    base = strategy.base_learning_rate(task)
    values = {"strategy": name}
    values["learning_rate"] = trial.suggest_float(
        "learning_rate", base / LR_SPAN, base * LR_SPAN, log=True
    )
    knobs = {"weight_decay": WEIGHT_DECAY, **strategy.knobs}
    for option, knob in knobs.items():
        values[option] = _draw(trial, option, knob, num_blocks)
    return values


def searched(strategies: list[str]) -> set[str]:
    """The names of the options a study over ``strategies`` draws."""
    names = {"learning_rate", "weight_decay"} | ({"strategy"} if len(strategies) > 1 else set())
    for name in strategies:
        names |= set(STRATEGIES.get(name).knobs)
    return names


def needs_block_count(strategies: list[str]) -> bool:
    return any(
        knob.high is None for name in strategies for knob in STRATEGIES.get(name).knobs.values()
    )


def _draw(trial, option: str, knob: Knob, num_blocks: int | None):
    if knob.choices:
        return trial.suggest_categorical(option, list(knob.choices))
    high = num_blocks if knob.high is None else knob.high
    if high is None:
        raise ValueError(f"{option}: the range goes up to the model's number of blocks, unknown")
    if knob.integer:
        return trial.suggest_int(option, int(knob.low), int(high), log=knob.log)
    return trial.suggest_float(option, knob.low, high, log=knob.log)
