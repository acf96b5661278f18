"""``early_stopping_patience``: stop when ``metric_for_best_model`` has not improved for N
evaluations and keep the best checkpoint (transformers' ``EarlyStoppingCallback``)."""

from dataclasses import dataclass, field

from hftl.guards.base import Guard


@dataclass
class EarlyStoppingArguments:
    early_stopping_patience: int = field(
        default=0,
        metadata={
            "help": "Stop after this many evaluations without improvement of "
            "metric_for_best_model (0 = off; needs load_best_model_at_end)."
        },
    )


class EarlyStopping(Guard):
    name = "early_stopping"
    summary = "stop when the validation metric stops improving; keep the best checkpoint"
    arguments = EarlyStoppingArguments

    def active(self, args):
        return bool(args.early_stopping_patience)

    ranges = {"early_stopping_patience": (0, True)}

    def check(self, args):
        if args.early_stopping_patience and not args.load_best_model_at_end:
            raise ValueError(
                "early_stopping_patience needs load_best_model_at_end=true (and an eval_strategy "
                "equal to save_strategy) so the best checkpoint is kept"
            )

    def callbacks(self, args):
        from transformers import EarlyStoppingCallback

        return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]

    def run_info(self, args):
        return {"early_stopping_patience": args.early_stopping_patience or None}

    def describe(self, training):
        return (
            f"Early stopping (patience {training['early_stopping_patience']} evaluations) kept "
            "the best checkpoint."
        )
