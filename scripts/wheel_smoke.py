"""The smoke test of an installed hftl (run by scripts/check_wheel.py with the fresh venv's Python,
from a directory outside the checkout).

    python wheel_smoke.py MODULE [MODULE ...]   # the modules of hftl/ in the tree that was built

Checks that hftl is imported from the venv, that every module imports, that ``hftl --help``,
``python -m hftl train --help`` and ``hftl configs`` work, and that ``hftl train TASK`` trains a
tiny random model for every registered task into an output directory that plain
``transformers.pipeline()`` loads and runs, predicting the data's label names, and that
``hftl predict`` labels new data with it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

COMMON = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--report_to", "none",
          "--use_cpu", "true", "--disable_tqdm", "true", "--seed", "0"]  # fmt: skip


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"wheel smoke test: {message}")


def command(*args: str) -> str:
    """Run a command; its output (a failure shows it and stops)."""
    done = subprocess.run(list(args), capture_output=True, text=True)
    check(
        done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done.stdout


def check_modules(names: list[str]) -> None:
    import hftl

    home = Path(hftl.__file__).resolve().parent
    check(Path(sys.prefix).resolve() in home.parents, f"hftl comes from {home}, not this venv")
    for name in names:
        importlib.import_module(name)
    print(f"{len(names)} modules import from {home}")


def text_run(work: Path):
    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(work / "model", "bert")
    write_toy_reviews_csv(work / "train.csv", 40)
    flags = ["--model_name_or_path", work / "model", "--train_file", work / "train.csv"]
    return flags, "a wonderful film", {"negative", "positive"}, work / "train.csv"


def image_run(work: Path):
    from PIL import Image

    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    save_tiny_image_checkpoint(work / "model", "vit")
    write_toy_image_folder(work / "images", 6)
    write_toy_image_folder(work / "validation", 2, seed=1)
    image = Image.open(next((work / "images" / "red").glob("*.png"))).convert("RGB")
    flags = ["--model_name_or_path", work / "model", "--train_dir", work / "images",
             "--validation_dir", work / "validation"]  # fmt: skip
    return flags, image, {"red", "green", "blue"}, work / "validation"


def audio_run(work: Path):
    from hftl.testing import AUDIO_RATE, save_tiny_audio_checkpoint, write_toy_audio_folder

    save_tiny_audio_checkpoint(work / "model", "wav2vec2")
    write_toy_audio_folder(work / "clips", 6)
    write_toy_audio_folder(work / "validation", 2, seed=1)
    t = np.arange(AUDIO_RATE // 2) / AUDIO_RATE
    clip = {
        "raw": (0.5 * np.sin(2 * np.pi * 300 * t)).astype("float32"),
        "sampling_rate": AUDIO_RATE,
    }
    flags = ["--model_name_or_path", work / "model", "--train_dir", work / "clips",
             "--validation_dir", work / "validation"]  # fmt: skip
    return flags, clip, {"low", "mid", "high"}, work / "validation"


RUNS = {"text-classification": text_run, "image-classification": image_run,
        "audio-classification": audio_run}  # fmt: skip


def check_training(work: Path) -> None:
    from transformers import pipeline

    from hftl.tasks import TASKS

    untested = [task.name for task in TASKS if task.name not in RUNS]
    check(not untested, f"no smoke run for the tasks {untested}: add them to wheel_smoke.py")
    for task in TASKS:
        folder = work / task.name
        folder.mkdir()
        flags, example, labels, new_data = RUNS[task.name](folder)
        output = folder / "out"
        command("hftl", "train", task.name, *map(str, flags), "--output_dir", str(output), *COMMON)
        scores = pipeline(task.name, model=str(output), top_k=None)(example)
        if scores and isinstance(scores[0], list):  # text: one list of scores per input
            scores = scores[0]
        predicted = {score["label"] for score in scores}
        check(predicted == labels, f"{task.name}: pipeline() predicts {predicted}, not {labels}")
        print(f"hftl train {task.name}: pipeline() loads {output} and scores {sorted(labels)}")
        rows = folder / "predictions.jsonl"
        command("hftl", "predict", str(output), str(new_data), "--output", str(rows))
        predicted = [json.loads(line)["label"] for line in rows.read_text().splitlines()]
        check(bool(predicted) and set(predicted) <= labels,
              f"{task.name}: hftl predict wrote {predicted[:3]}")  # fmt: skip
        print(f"hftl predict {task.name}: {len(predicted)} rows")


def main(modules: list[str]) -> int:
    check_modules(modules)
    check("train" in command("hftl", "--help"), "hftl --help does not list train")
    usage = command(sys.executable, "-m", "hftl", "train", "--help")
    check("image-classification" in usage, "python -m hftl train --help lists no tasks")
    path = Path(command("hftl", "configs", "--path", "recipes/configs/vit_base_lora.yaml").strip())
    check(path.is_file() and Path(sys.prefix).resolve() in path.resolve().parents,
          f"the README's config resolves to {path}, not to the installed one")  # fmt: skip
    check("multi_gpu" in command("hftl", "configs"), "hftl configs lists no accelerate config")
    check_training(Path.cwd())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
