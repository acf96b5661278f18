"""A real recipe run killed with SIGKILL, then the same command run again: the final model and its
metrics equal the uninterrupted run's, exactly, wherever the kills landed (before the first
checkpoint, while a checkpoint was being written, just after one, at a random moment, during the
final save, after the card but before run_info.json). Each test kills the same command at
several of these moments in turn, as a run interrupted again and again would be, then lets it
finish."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hftl.checkpoints import CHECKPOINT_MARKER
from hftl.run_files import FINISHED_RUN
from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sentiment.py"
STEPS, SAVE_EVERY = 100, 10
SEED = int(os.environ.get("HFTL_KILL_SEED", "0"))  # the random kill moments: reproduce with it
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 200, seed=0)
    write_toy_reviews_csv(root / "validation.csv", 40, seed=1)
    return root


def command(setup, out) -> list[str]:
    return [sys.executable, str(RECIPE), "--model_name_or_path", str(setup / "bert"),
            "--train_file", str(setup / "train.csv"), "--validation_file", str(setup / "validation.csv"),
            "--output_dir", str(out), "--max_steps", str(STEPS), "--save_steps", str(SAVE_EVERY),
            "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--logging_steps", "5",
            "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true"]  # fmt: skip


def run(setup, out) -> subprocess.CompletedProcess:
    return subprocess.run(command(setup, out), capture_output=True, text=True, timeout=300)


def final(out: Path) -> tuple[dict, dict]:
    """The saved model's tensors and its evaluation metrics (timings left out)."""
    metrics = json.loads((out / "eval_results.json").read_text())
    kept = {k: v for k, v in metrics.items() if not k.endswith(("runtime", "per_second"))}
    return load_file(out / "model.safetensors"), kept


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    result = run(setup, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def reference(uninterrupted):
    return final(uninterrupted)


def checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def kill_when(setup, out, moment) -> str:
    """Start the run and SIGKILL it when ``moment(out)`` first holds (polled every 0.2 ms);
    return what it wrote to stderr."""
    log = out.parent / f"{out.name}-killed.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(command(setup, out), stdout=subprocess.DEVNULL, stderr=handle)
        kill_at(process, out, moment)
    return log.read_text()


def kill_at(process, out, moment) -> None:
    try:
        while process.poll() is None:
            if moment(out):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0002)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the run ended before the kill"


def writing_checkpoint(step):
    def moment(out):
        folder = out / f"checkpoint-{step}"
        return folder.is_dir() and not (folder / CHECKPOINT_MARKER).exists()

    return moment


def after_random_delay(rng):
    """Some time after the first complete checkpoint: a random point of the training."""
    state = {}

    def moment(out):
        if not (out / f"checkpoint-{SAVE_EVERY}" / CHECKPOINT_MARKER).exists():
            return False
        state.setdefault("at", time.perf_counter() + rng.uniform(0.0, 0.8))
        return time.perf_counter() >= state["at"]

    return moment


_rng = random.Random(SEED)
MOMENTS = {
    "before the first checkpoint": lambda out: (out / "train.log").exists(),
    "while writing checkpoint-30": writing_checkpoint(30),
    "just after checkpoint-50": lambda out: (out / "checkpoint-50" / CHECKPOINT_MARKER).exists(),
    "at a random moment": after_random_delay(_rng),  # another: HFTL_KILL_SEED=N
    "during the final save": lambda out: (
        (out / "model.safetensors").exists() and not (out / FINISHED_RUN).exists()
    ),
    # the card and its plots are written before the marker: a run stopped between them is not
    # finished, so the same command completes it (issue 28)
    "after the card, before run_info.json": lambda out: (
        (out / "README.md").exists() and not (out / FINISHED_RUN).exists()
    ),
}


# Each chain: the moments one command is killed at, in turn, before it is let finish.
CHAINS = [
    ["before the first checkpoint", "while writing checkpoint-30", "just after checkpoint-50"],
    ["at a random moment", "during the final save", "after the card, before run_info.json"],
]


@pytest.mark.parametrize("chain", CHAINS, ids=[" then ".join(c) for c in CHAINS])
def test_killed_run_resumed_by_the_same_command_equals_the_uninterrupted_run(
    setup, reference, tmp_path, chain
):
    out = tmp_path / "out"
    said = []  # what each command wrote to stderr: the killed ones, then the one that finished
    for moment in chain:
        said.append(kill_when(setup, out, MOMENTS[moment]))
        if moment == "while writing checkpoint-30":
            assert not (out / "checkpoint-30" / CHECKPOINT_MARKER).exists(), "killed too late"
        assert not (out / FINISHED_RUN).exists()
    again = run(setup, out)  # the same command, nothing added
    assert again.returncode == 0, again.stderr[-3000:]
    said.append(again.stderr)
    for moment, next_said in zip(chain, said[1:], strict=True):  # the command after each kill
        if moment == "before the first checkpoint":  # nothing to resume from: step 0 again
            assert "resuming from" not in next_said
        else:
            assert "resuming from" in next_said, moment
        if moment == "while writing checkpoint-30":
            assert "skipping incomplete checkpoint" in next_said and "checkpoint-30" in next_said
    complete_before = [p for p in checkpoints(out) if int(p.name.split("-")[1]) < STEPS]
    assert all((p / CHECKPOINT_MARKER).exists() for p in complete_before)

    tensors, metrics = final(out)
    expected_tensors, expected_metrics = reference
    assert metrics == expected_metrics
    assert tensors.keys() == expected_tensors.keys()
    assert all(torch.equal(tensors[k], expected_tensors[k]) for k in tensors)
    # the finished run has everything a finished run has: its card and plots, then the marker
    assert {"README.md", "training_curves.png", FINISHED_RUN} <= {p.name for p in out.iterdir()}


def test_the_same_command_after_a_finished_run_is_refused_and_the_model_kept(
    setup, uninterrupted, reference
):
    out = uninterrupted
    before = (out / "model.safetensors").read_bytes()
    again = run(setup, out)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"sentiment.py: error: --output_dir {out} already holds a finished run ({FINISHED_RUN}, "
        "the model); choose another --output_dir, or pass --overwrite_output_dir true to replace it"
    )
    assert "Traceback" not in again.stderr
    assert (out / "model.safetensors").read_bytes() == before
