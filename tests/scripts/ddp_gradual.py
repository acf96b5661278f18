"""Gradual unfreezing under DDP; each rank writes its final weights. Run by tests/test_ddp.py:

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no --main_process_port PORT tests/scripts/ddp_gradual.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from transformers import set_seed

from hftl import TransferTrainer
from hftl.testing import keyword_dataset, quiet_training_args, tiny_bert

out = Path(sys.argv[1])
set_seed(0)
model = tiny_bert(num_labels=2, layers=3)
args = quiet_training_args(
    out / "run",
    strategy="gradual",
    unfreeze_every=2,
    unfreeze_unit="step",
    layer_decay=0.8,
    head_lr_multiplier=3.0,
    learning_rate=1e-3,
    weight_decay=0.1,
    max_grad_norm=1.0,
    max_steps=10,
    per_device_train_batch_size=4,
)
trainer = TransferTrainer(model, args, train_dataset=keyword_dataset(128))
rank = trainer.args.process_index
if rank == 0:
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / "initial.pt")
trainer.train()
torch.save(model.state_dict(), out / f"rank{rank}.pt")
(out / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "world_size": trainer.args.world_size,
            "parallel_mode": str(trainer.args.parallel_mode),
            "history": trainer.unfreezing.history,
            "find_unused": trainer.args.ddp_find_unused_parameters,
            "wrapped": type(trainer.model_wrapped).__name__,
        }
    )
)
# End the process group before the interpreter does: a gloo thread still running at exit can
# abort the process after its work is done ("terminate called without an active exception").
torch.distributed.destroy_process_group()
