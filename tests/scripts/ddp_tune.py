"""Run ``hftl tune`` under DDP, recording on every rank what each run it started was given and
what it measured. Run by tests/test_ddp.py:

    accelerate launch ... tests/scripts/ddp_tune.py TASK RANK_DIR [hftl tune flags...]
"""

import json
import sys
from pathlib import Path

import torch

import hftl.tune
from hftl.tune import tune

task, rank_dir, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
runs = []
run_task = hftl.tune.run_task


def recorded(task, argv, **kwargs):
    report, trainer = run_task(task, argv, **kwargs)
    runs.append({
        "output_dir": Path(trainer.args.output_dir).name,
        "learning_rate": trainer.args.learning_rate,
        "layer_decay": trainer.args.layer_decay,
        "world_size": trainer.args.world_size,
        "metrics": {k: v for k, v in report.items() if k in ("eval_accuracy", "accuracy")},
    })  # fmt: skip
    rank = trainer.args.process_index
    rank_dir.mkdir(parents=True, exist_ok=True)
    (rank_dir / f"rank{rank}.json").write_text(json.dumps(runs))
    return report, trainer


hftl.tune.run_task = recorded
tune(task, argv, prog="ddp_tune.py")
# End the process group before the interpreter does: a gloo thread still running at exit can
# abort the process after its work is done ("terminate called without an active exception").
torch.distributed.destroy_process_group()
