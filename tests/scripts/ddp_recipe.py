"""Run a recipe under DDP, then let every rank write its final weights. Run by tests/test_ddp.py:

    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml --main_process_port PORT \
        tests/scripts/ddp_recipe.py RECIPE RANK_DIR [recipe flags...]
"""

import json
import os
import sys
from pathlib import Path

import torch

from hftl.testing import load_script

recipe, rank_dir, recipe_argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
if os.environ.get("HFTL_TEST_CACHE_PER_RANK"):  # a feature cache directory of each rank's own
    own = Path(os.environ["HFTL_TEST_CACHE_PER_RANK"]) / f"rank{os.environ['LOCAL_RANK']}"
    recipe_argv += ["--feature_cache_dir", str(own)]
path = Path(__file__).resolve().parents[2] / "recipes" / f"{recipe}.py"
module = load_script(path)

report, trainer = module.main(recipe_argv)
rank = trainer.args.process_index
model = trainer.accelerator.unwrap_model(trainer.model)
rank_dir.mkdir(parents=True, exist_ok=True)
penalties = {}
for guard in trainer.guards:
    try:
        value = guard.penalty(model, {}, None)
    except (KeyError, ValueError):  # it reads the batch (lwf, replay): none here
        continue
    if value is not None:
        penalties[guard.name] = value.item()
torch.save(model.state_dict(), rank_dir / f"rank{rank}.pt")
(rank_dir / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "world_size": trainer.args.world_size,
            "accuracy": report["accuracy"],
            "feature_cache": trainer.feature_cache,
            "wrapped": type(trainer.model_wrapped).__name__,
            "parameters": [name for name, _ in model.named_parameters()],
            # each active guard's penalty on this rank's final weights (those that need no batch)
            "guard_penalties": penalties,
        }
    )
)
# End the process group before the interpreter does: a gloo thread still running at exit can
# abort the process after its work is done ("terminate called without an active exception").
torch.distributed.destroy_process_group()
