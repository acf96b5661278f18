"""Two real DDP ranks (gloo, CPU) through `accelerate launch`: gradual unfreezing stays in sync."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import free_port

from hftl import build_layer_map
from hftl.testing import tiny_bert

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def accelerate_launch(
    script: str, *script_args: str, timeout: int = 240
) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        os.path.join(SCRIPTS, script), *script_args,
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.ddp
def test_gradual_unfreezing_under_ddp_ends_with_identical_weights(tmp_path):
    accelerate_launch("ddp_gradual.py", str(tmp_path))
    meta = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [m["world_size"] for m in meta] == [2, 2]
    assert meta[0]["wrapped"] == "DistributedDataParallel"
    assert meta[0]["find_unused"] is True
    # Both ranks unfroze the same depths at the same steps: head, then blocks 3, 2, 1, embeddings.
    assert meta[0]["history"] == meta[1]["history"]
    assert [(step, depth) for step, _, depth in meta[0]["history"]] == [
        (0, 4),
        (2, 3),
        (4, 2),
        (6, 1),
        (8, 0),
    ]

    initial = torch.load(tmp_path / "initial.pt")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    differing = [name for name in rank0 if not torch.equal(rank0[name], rank1[name])]
    assert differing == [], f"ranks drifted apart in {differing[:5]}"
    depths = build_layer_map(tiny_bert(num_labels=2, layers=3)).depths
    unchanged = [name for name in depths if torch.equal(initial[name], rank0[name])]
    assert unchanged == [], f"never trained: {unchanged[:5]}"
