"""hftl on a GPU in one short run (issue 30): speed against the example pipeline, MFU, the cached
extraction's floor, FSDP and DeepSpeed launches resumed, and which speed defaults to turn on.

Here, before a GPU run (the GPU machine has no registry: its missing wheels travel with the tree):

    python scripts/gpu_check.py --fetch_wheels .whl      # hftl's wheel + the pure-Python closure

On the GPU machine (device tool: carry [".whl"]; about 6 minutes on one H100):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --out $OUT 2>&1 | tee $OUT/log

A rehearsal here, with the GPU image's Python and torch on the CPU (it found DeepSpeed's
refusal of a launch without --bf16):

    python3.12 -m venv /tmp/v312 && /tmp/v312/bin/pip install torch==2.11.0 torchvision==0.26.0 \
        numpy pyarrow pandas pillow matplotlib psutil pyyaml regex safetensors tokenizers xxhash \
        hf-xet charset-normalizer markupsafe ninja py-cpuinfo msgpack nvidia-ml-py einops
    /tmp/v312/bin/python3 -m pip install ... --target /tmp/site .whl/*.whl   # as on the GPU
    PYTHONPATH=/tmp/site /tmp/v312/bin/python3 scripts/gpu_check.py --smoke --out /tmp/out

Here, after: ``python scripts/gpu_check.py --report DIR/gpu_results.json`` writes the GPU section
of docs/benchmarks.md (several files: a rerun's ``--stages`` replace the first run's). ``--smoke``
runs every stage on the CPU with tiny models (the suite does).

What it measures (the results are written after every side and stage, so a run cut short still
returns what it finished; work not sure to end within ``--budget_s`` is left out and said so):

1. the device: name, driver, versions, its bf16 peak (spec sheet) and a measured bf16 matmul;
2. full fine-tuning of a ViT-B/16-sized and a BERT-base-sized model (random weights: speed does
   not depend on them; random images and words made on the spot) in this process, side by side:
   the example pipeline in bf16 (scripts/benchmark.py's baseline), hftl's defaults in bf16, and
   hftl with one knob changed each (fp32; 4 DataLoader workers; torch.compile). Throughput is
   timed over steps after a warm-up (CUDA synchronised at both ends); MFU counts each example's
   FLOPs (torch's FlopCounterMode on the model class, forward and backward; for text, on the
   example's own tokens: padding is not useful work) against the device's bf16 peak;
3. cached feature extraction (ViT, bf16) against one plain forward pass over the same images;
4. ``accelerate launch`` with recipes/accelerate/fsdp.yaml and deepspeed_zero2.yaml on one
   process: killed after its first complete checkpoint, then the same command, which must resume
   from it and finish;
5. from 2: whether bf16, torch.compile and DataLoader workers should be on by default on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # benchmark.py (the baseline), inference_benchmark.py

SECTION = "gpu"
MODELS = {
    "full": "ViT-B/16 (224 px) and BERT-base, their configs' defaults with random weights (speed "
    "does not depend on the weights); random 320x240 JPEGs and made-up reviews of 5-300 words "
    "(median 40) written on the spot",
    "smoke": "hftl.testing's tiny random ViT (32 px) and BERT; toy images and reviews",
}
RESULTS = "gpu_results.json"

# Per task: training examples, validation examples, batch size, warm-up and timed steps.
SIZES = {
    "full": {"image": {"train": 1024, "validation": 64, "batch": 64, "warmup": 6, "timed": 30},
             "text": {"train": 2048, "validation": 64, "batch": 32, "warmup": 10, "timed": 60}},
    "smoke": {"image": {"train": 48, "validation": 12, "batch": 8, "warmup": 2, "timed": 4},
              "text": {"train": 96, "validation": 16, "batch": 8, "warmup": 2, "timed": 6}},
}  # fmt: skip
COMPILE_WARMUP = {"full": 15, "smoke": 3}  # steps before timing a compiled run (recompiles)
# Seconds one side takes at most, roughly: a side that would end after --budget_s is left out.
SIDE_S = {"eager": {"full": 20, "smoke": 0}, "compile": {"full": 90, "smoke": 0}}
MAX_SEQ_LENGTH = {"full": 128, "smoke": 48}  # run_glue's default; the tiny BERT has 64 positions
LEARNING_RATE = {"image": 5e-5, "text": 5e-5}
WORKERS = 4

# hftl's variants, each against "hftl defaults (bf16)": (name, flags)
VARIANTS = [
    ("hftl defaults, bf16", ["--bf16", "true"]),
    ("hftl, fp32", ["--bf16", "false"]),
    (f"hftl, bf16, {WORKERS} DataLoader workers", ["--bf16", "true", "--dataloader_num_workers", str(WORKERS)]),
    ("hftl, bf16, torch.compile", ["--bf16", "true", "--torch_compile", "true"]),
]  # fmt: skip
BASELINE = "example pipeline, bf16"
DEFAULTS = VARIANTS[0][0]

# Dense bf16 peak of the spec sheets, TFLOP/s (no sparsity), by a part of the device's name.
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("GH200", 989.4), ("A100", 312.0), ("L4", 121.0)]  # fmt: skip

# A knob goes on by default when it speeds every task up by at least this much (and, for
# torch.compile, pays its compilation back within a run of TYPICAL_STEPS).
MIN_SPEEDUP = 1.10
TYPICAL_STEPS = 500

# Launch check: steps, checkpoint interval (killed after the first), per-device batch
LAUNCH = {"full": (20, 10, 16), "smoke": (40, 10, 8)}
# On the CPU, Accelerate refuses FSDP's sync_module_states (and the RAM-efficient loading that
# needs it); the smoke run turns them off and otherwise launches the same config.
SMOKE_LAUNCH_FLAGS = {"fsdp": ["--fsdp_sync_module_states", "false",
                               "--fsdp_cpu_ram_efficient_loading", "false"]}  # fmt: skip
LAUNCH_CONFIGS = {"fsdp": "fsdp.yaml", "deepspeed_zero2": "deepspeed_zero2.yaml"}
LAUNCH_MIN_S = {"full": 60, "smoke": 0}  # a launch check is not started with less time left


# --------------------------------------------------------------------------------------------
# Data and models, made on the spot
# --------------------------------------------------------------------------------------------


def prepare(work: Path, smoke: bool) -> dict:
    """Models (saved like Hub checkpoints) and data both sides read: image folders, text CSVs."""
    from hftl.testing import (
        save_tiny_image_checkpoint,
        save_tiny_text_checkpoint,
        write_toy_image_folder,
    )

    mode = "smoke" if smoke else "full"
    image, text = SIZES[mode]["image"], SIZES[mode]["text"]
    if smoke:
        save_tiny_image_checkpoint(work / "image-model", "vit", num_labels=3)
        save_tiny_text_checkpoint(work / "text-model", "bert")
        size = None
    else:
        save_base_models(work)
        size = (320, 240)
    per_class = image["train"] // 3 + 1
    write_toy_image_folder(work / "train", per_class, seed=0, odd_modes=False, size=size)
    write_toy_image_folder(work / "validation", image["validation"] // 3, seed=1, odd_modes=False,
                           size=size)  # fmt: skip
    write_texts(work, text["train"], text["validation"])
    return {"image_model": str(work / "image-model"), "train_dir": str(work / "train"),
            "validation_dir": str(work / "validation"), "text_model": str(work / "text-model"),
            "train_file": str(work / "train.csv"), "validation_file": str(work / "validation.csv"),
            "max_seq_length": MAX_SEQ_LENGTH[mode],
            "image_train": per_class * 3, "text_train": text["train"]}  # fmt: skip


def save_base_models(work: Path) -> None:
    """ViT-B/16 (224 px) and BERT-base, their configs' defaults, random weights; a WordPiece
    tokenizer over made-up words."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizer,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(num_labels=3)).save_pretrained(work / "image-model")
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(work / "image-model")
    BertForSequenceClassification(BertConfig(num_labels=2)).save_pretrained(work / "text-model")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(20000)]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(work / "text-model")


def write_texts(work: Path, train: int, validation: int) -> None:
    """Reviews of the tokenizer's own words, 5-300 words long (log-normal, median 40: many
    short, a long tail, as review data is), labelled at random."""
    import csv

    import numpy as np
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(work / "text-model").get_vocab()
    words = sorted(w for w in vocab if not w.startswith(("[", "#")))
    rng = np.random.default_rng(0)
    for name, count in (("train", train), ("validation", validation)):
        lengths = np.clip(rng.lognormal(np.log(40), 0.8, count).astype(int), 5, 300)
        with open(work / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for length in lengths:
                label = ("negative", "positive")[int(rng.integers(2))]
                writer.writerow([" ".join(rng.choice(words, length)), label])


# --------------------------------------------------------------------------------------------
# Measuring: steady-state steps, FLOPs, the device
# --------------------------------------------------------------------------------------------


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_timer(warmup: int):
    """A TrainerCallback that times the steps after ``warmup`` (CUDA synchronised at both ends)
    and the warm-up itself (compilation, cuDNN's choices, the first batches)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks = {}

        def on_train_begin(self, args, state, control, **kwargs):
            from accelerate.state import AcceleratorState

            self.precision = AcceleratorState().mixed_precision  # what the Accelerator trains in
            synchronize()
            self.marks["begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, state.max_steps):
                synchronize()
                self.marks[state.global_step] = time.perf_counter()
            self.steps = state.global_step

        def result(self, batch: int) -> dict:
            steps = self.steps - warmup
            seconds = self.marks[self.steps] - self.marks[warmup]
            return {"precision": self.precision, "timed_steps": steps, "step_s": seconds / steps,
                    "samples_per_s": steps * batch / seconds, "warmup_steps": warmup,
                    "warmup_s": self.marks[warmup] - self.marks["begin"]}  # fmt: skip

    return StepTimer()


def training_flops(task: str, model_dir: str, lengths=None) -> float:
    """FLOPs of one training example (forward + backward) of the model class saved in
    ``model_dir``, counted by torch's FlopCounterMode on meta tensors. ``lengths``: the token
    counts of the text examples; the FLOPs of a length are fitted exactly as c0 + c1*n + c2*n^2
    (linear layers, then attention) from three counts, and averaged over the examples."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import (
        AutoConfig,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    config = AutoConfig.from_pretrained(model_dir)
    auto = (
        AutoModelForImageClassification if task == "image" else AutoModelForSequenceClassification
    )
    with torch.device("meta"):
        model = auto.from_config(config)
    label = torch.zeros(1, dtype=torch.long, device="meta")

    def count(**inputs) -> float:
        with FlopCounterMode(display=False) as counter:
            model(**inputs, labels=label).loss.backward()
        return float(counter.get_total_flops())

    if task == "image":
        side = config.image_size
        return count(pixel_values=torch.zeros(1, config.num_channels, side, side, device="meta"))
    points = [8, 16, 32]
    counts = [count(input_ids=torch.ones(1, n, dtype=torch.long, device="meta")) for n in points]
    c0, c1, c2 = np.linalg.solve(np.array([[1, n, n * n] for n in points], float), counts)
    n = np.asarray(lengths, float)
    return float(np.mean(c0 + c1 * n + c2 * n * n))


def token_lengths(paths: dict) -> list[int]:
    """Each training review's tokens ([CLS] and [SEP] included), truncated as the runs truncate."""
    import csv

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(paths["text_model"])
    with open(paths["train_file"], newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    encoded = tokenizer(texts, truncation=True, max_length=paths["max_seq_length"])
    return [len(ids) for ids in encoded["input_ids"]]


def device_info(smoke: bool) -> dict:
    """The device, its driver, the versions, the spec's bf16 peak and a measured bf16 matmul."""
    import accelerate
    import torch
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "transformers": transformers.__version__,
                "accelerate": accelerate.__version__}  # fmt: skip
    for name in ("hftl", "peft", "timm", "datasets", "deepspeed"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    info = {"versions": versions, "smoke": smoke, "date": time.strftime("%Y-%m-%d")}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        props = torch.cuda.get_device_properties(0)
        info.update(device=name, memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, driver=driver_version(),
                    bf16_supported=torch.cuda.is_bf16_supported())  # fmt: skip
        info["peak_bf16_tflops"] = next((p for key, p in PEAK_BF16_TFLOPS if key in name), None)
    else:
        from hftl.outputs import describe_hardware

        info.update(device=describe_hardware(), driver=None, peak_bf16_tflops=None)
    info["matmul_n"] = 256 if smoke else 8192
    info["matmul_bf16_tflops"] = measured_matmul(info["matmul_n"])
    return info


def driver_version() -> str | None:
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        return found.stdout.strip().splitlines()[0] if found.returncode == 0 else None
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def measured_matmul(n: int, reps: int = 10) -> float:
    """TFLOP/s of an n x n x n bf16 matrix product (mean of ``reps`` after 3 warm-ups)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def peak_memory_mib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def train_side(task: str, side: str, flags: list[str], paths: dict, work: Path, mode: str) -> dict:
    """One run of ``side`` (the baseline, or hftl with ``flags``) for max_steps, timed."""
    from benchmark import run_baseline, run_hftl

    sizes = SIZES[mode][task]
    compiled = "--torch_compile" in flags
    warmup = COMPILE_WARMUP[mode] if compiled else sizes["warmup"]
    steps = warmup + sizes["timed"]
    if compiled and mode == "smoke":  # dynamo's tracing without inductor's C++ build on the CPU
        flags = [*flags, "--torch_compile_backend", "eager"]
    case = {"task": task, "strategy": "full", "epochs": 1, "lr": LEARNING_RATE[task],
            "variants": {"run": []}}  # fmt: skip
    train_n = paths[f"{task}_train"]
    timer = step_timer(warmup)
    out = Path(tempfile.mkdtemp(prefix=f"{task}-", dir=work))
    reset_memory()
    if mode == "smoke":  # bf16 on the CPU needs use_cpu
        flags = [*flags, "--use_cpu", "true"]
    if side == BASELINE:
        training = {"max_steps": steps, "bf16": True, "use_cpu": mode == "smoke"}
        result = run_baseline(case, paths, (train_n, sizes["batch"]), out, training, [timer])
    else:
        extra = ["--max_steps", str(steps), "--eval_strategy", "no", *flags]
        result = run_hftl(case, paths, (train_n, sizes["batch"]), out, "run", extra, [timer])
    return {"task": task, "side": side, "flags": flags, "batch": sizes["batch"],
            **timer.result(sizes["batch"]), "peak_memory_mib": peak_memory_mib(),
            "accuracy": result["accuracy"]}  # fmt: skip


def training_stage(paths: dict, work: Path, mode: str, save, deadline: float, compiled: bool):
    """Every side of both tasks (without torch.compile, or only with it), each timed."""
    runs = []
    for task in ("image", "text"):
        sides = [(BASELINE, [])] if not compiled else []
        sides += [
            (name, flags) for name, flags in VARIANTS if ("--torch_compile" in flags) == compiled
        ]
        for side, flags in sides:
            # a side not sure to end by the deadline is left out (compiling takes a minute or two)
            if time.perf_counter() + (SIDE_S["compile" if compiled else "eager"][mode]) > deadline:
                runs.append({"task": task, "side": side, "skipped": "out of the time budget"})
                continue
            try:
                runs.append(train_side(task, side, flags, paths, work, mode))
            except Exception as error:  # noqa: BLE001 - one failed side must not lose the others
                runs.append({"task": task, "side": side, "failed": one_line(error)})
            print(json.dumps(runs[-1]), flush=True)
            save()
    return runs


def flops_stage(paths: dict) -> dict:
    return {"image": training_flops("image", paths["image_model"]),
            "text": training_flops("text", paths["text_model"], token_lengths(paths))}  # fmt: skip


def extraction_stage(paths: dict, work: Path, mode: str) -> dict:
    """hftl's cached feature extraction (bf16) against one plain forward pass of the same model
    over the same images in the same process, kernels warm (scripts/benchmark.py's floor)."""
    from benchmark import run_hftl

    sizes = SIZES[mode]["image"]
    case = {"task": "image", "strategy": "feature_extraction", "epochs": 3, "lr": 5e-3,
            "variants": {"run": []}}  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="extraction-", dir=work))
    reset_memory()
    flags = ["--bf16", "true", "--eval_strategy", "no", "--use_cpu", str(mode == "smoke").lower()]
    result = run_hftl(case, paths, (paths["image_train"], sizes["batch"]), out, "run", flags)
    cache = json.loads((out / "model" / "run_info.json").read_text())["training"]["feature_cache"]
    return {"examples": paths["image_train"], "extraction_s": cache["train_seconds"],
            "training_s": result["train_s"], "floor_s": result["warm_floor_s"],
            "extraction_over_floor": cache["train_seconds"] / result["warm_floor_s"],
            "training_over_floor": result["train_s"] / result["warm_floor_s"],
            "peak_memory_mib": peak_memory_mib()}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it, the lowest first."""
    import psutil

    parent = psutil.Process(pid)
    for process in [*reversed(parent.children(recursive=True)), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def launch_stage(name: str, paths: dict, work: Path, mode: str, timeout: float = 600) -> dict:
    """``accelerate launch`` with the recipe's config on one process: killed after the first
    complete checkpoint, then the same command again, which must resume there and finish. Each
    of the two commands is stopped after ``timeout`` seconds (a hung launch must not take the
    rest of the run)."""
    if name.startswith("deepspeed"):
        try:
            import deepspeed  # noqa: F401
        except Exception as error:  # noqa: BLE001 - any failure to import is the answer
            return {"status": "skipped", "why": f"deepspeed does not import: {one_line(error)}"}
    from hftl.checkpoints import CHECKPOINT_MARKER

    steps, every, batch = LAUNCH[mode]
    out = work / f"launch-{name}"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate" / LAUNCH_CONFIGS[name]),
        "--num_processes",
        "1",
        "--main_process_port",
        str(free_port()),
        *(SMOKE_LAUNCH_FLAGS.get(name, []) if mode == "smoke" else []),
        str(ROOT / "recipes" / "sentiment.py"),
        "--model_name_or_path",
        paths["text_model"],
        "--train_file",
        paths["train_file"],
        "--validation_file",
        paths["validation_file"],
        "--max_seq_length",
        str(paths["max_seq_length"]),
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--save_steps",
        str(every),
        "--logging_steps",
        "5",
        "--per_device_train_batch_size",
        str(batch),
        "--learning_rate",
        "5e-5",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        *(["--use_cpu", "true"] if mode == "smoke" else []),
    ]  # fmt: skip (the configs' bf16 on the CPU)
    log = work / f"launch-{name}.log"
    first = work / f"launch-{name}-first.log"
    marker = out / f"checkpoint-{every}" / CHECKPOINT_MARKER
    start = time.perf_counter()
    with open(first, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        while process.poll() is None and not marker.exists():
            if time.perf_counter() - start > timeout:
                break
            time.sleep(0.001)
        killed = process.poll() is None and marker.exists()
        if process.poll() is None:  # the launcher and its ranks (the elastic agent detaches them)
            kill_tree(process.pid)
        process.wait()
    first_s = time.perf_counter() - start
    kept = sorted(p.name for p in (out / f"checkpoint-{every}").glob("*"))
    with open(log, "w") as handle:
        start = time.perf_counter()
        again = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        try:
            again.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(again.pid)
            again.wait()
    second_s = time.perf_counter() - start
    train_log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    resumed = resumed_at(train_log)
    finished = (out / "run_info.json").exists()
    state = out / "trainer_state.json"
    step = json.loads(state.read_text())["global_step"] if state.exists() else None
    ok = killed and again.returncode == 0 and finished and resumed[0] == every and step == steps
    result = {"status": "passed" if ok else "failed", "killed_after_checkpoint": killed,
              "checkpoint_files": kept, "resumed_at_step": resumed[0], "resumed": resumed[1],
              "final_step": step, "steps": steps, "exit": again.returncode, "first_s": first_s,
              "second_s": second_s}  # fmt: skip
    if not ok:
        result["errors"] = (error_lines(first.read_text()), error_lines(log.read_text()))
        result["log_tail"] = (first.read_text()[-1500:], log.read_text()[-2500:])
    return result


def resumed_at(train_log: str) -> tuple[int | None, str | None]:
    """(the step the second command's Trainer resumed at, how): Trainer's "Resuming training
    from checkpoint ... global step N" in the run's train.log; hftl reads the weights itself
    ("read exactly") except under FSDP and DeepSpeed, whose checkpoints Trainer reads."""
    lines = train_log.splitlines()
    trainer = next((line for line in lines if "Resuming training from checkpoint" in line), "")
    found = re.search(r"global step (\d+)", trainer)
    if not found:
        return None, None
    exact = any("weights read exactly" in line for line in lines)
    how = "hftl read the weights exactly" if exact else "Trainer read the checkpoint"
    return int(found.group(1)), f"from checkpoint-{found.group(1)} at step {found.group(1)} ({how})"


def error_lines(log: str, keep: int = 12) -> list[str]:
    """The lines of a launch's log that say what went wrong in the rank (hftl's one-line errors,
    exceptions), before the launcher's own report of the failed child."""
    ours = log.split("ChildFailedError")[0]
    found = [line.strip() for line in ours.splitlines()
             if ("Error" in line or "error:" in line or "Exception" in line) and "Traceback" not in line]  # fmt: skip
    return found[-keep:]


# --------------------------------------------------------------------------------------------
# Conclusions and the report
# --------------------------------------------------------------------------------------------


def speedup(runs: list[dict], task: str, side: str, over: str = DEFAULTS) -> float | None:
    found = {r["side"]: r for r in runs if r["task"] == task and "samples_per_s" in r}
    if side in found and over in found:
        return found[side]["samples_per_s"] / found[over]["samples_per_s"]
    return None


def mfu(run: dict, flops: dict, info: dict) -> tuple[float | None, float | None]:
    """(MFU against the spec's bf16 peak, against the measured bf16 matmul)."""
    achieved = run["samples_per_s"] * flops[run["task"]] / 1e12
    peak, measured = info.get("peak_bf16_tflops"), info.get("matmul_bf16_tflops")
    return (achieved / peak if peak else None), (achieved / measured if measured else None)


def decide(runs: list[dict]) -> dict:
    """Per knob and task: whether bf16, DataLoader workers and torch.compile should be on by
    default on this device. Each must be at least MIN_SPEEDUP faster than the other setting, and
    torch.compile must pay its compilation back within TYPICAL_STEPS steps."""
    tasks = sorted({r["task"] for r in runs})
    decisions = {"bf16": {}, "dataloader_num_workers": {}, "torch_compile": {}}
    for task in tasks:
        decisions["bf16"][task] = verdict(speedup(runs, task, DEFAULTS, over=VARIANTS[1][0]))
        decisions["dataloader_num_workers"][task] = verdict(
            speedup(runs, task, VARIANTS[2][0]), on=WORKERS
        )
        compiled = verdict(speedup(runs, task, VARIANTS[3][0]))
        payback = compile_payback(runs, task)
        if compiled["on"] and (payback is None or payback > TYPICAL_STEPS):
            compiled = {
                **compiled,
                "on": False,
                "why": f"not paid back within {TYPICAL_STEPS} steps",
            }
        decisions["torch_compile"][task] = {**compiled, "payback_steps": payback}
    return decisions


def verdict(speedup_: float | None, on=True) -> dict:
    """On (``on``) at a speed-up of at least MIN_SPEEDUP, off under it, None unmeasured."""
    if speedup_ is None:
        return {"on": None, "speedup": None, "why": "not measured"}
    if speedup_ < MIN_SPEEDUP:
        return {"on": False, "speedup": speedup_, "why": f"under {MIN_SPEEDUP:.2f}x"}
    return {"on": on, "speedup": speedup_, "why": f"at least {MIN_SPEEDUP:.2f}x"}


def compile_payback(runs: list[dict], task: str) -> float | None:
    """Steps after which a compiled run has caught up with the eager one: the seconds its
    warm-up took beyond the eager warm-up's pace, over the seconds it saves per step (None: it
    saves none)."""
    found = {r["side"]: r for r in runs if r["task"] == task and "samples_per_s" in r}
    eager, compiled = found.get(DEFAULTS), found.get(VARIANTS[3][0])
    if not eager or not compiled or compiled["step_s"] >= eager["step_s"]:
        return None
    eager_pace = eager["warmup_s"] / eager["warmup_steps"]
    extra = max(0.0, compiled["warmup_s"] - compiled["warmup_steps"] * eager_pace)
    return extra / (eager["step_s"] - compiled["step_s"])


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:400]}"


def _number(value, fmt="{:.2f}", missing="-") -> str:
    return missing if value is None else fmt.format(value)


def report(results: dict, command: str) -> str:
    info = results["device"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    flops = results.get("flops", {})
    lines = [
        f"<!-- {SECTION}: generated by scripts/gpu_check.py; rerun it -->",
        "## GPU (issue 30)",
        "",
        f"- Command: `{command}`; {info['date']}"
        + (
            " (**smoke run: tiny models on the CPU, not a GPU measurement**)"
            if info["smoke"]
            else ""
        ),
        f"- Device: {info['device']}"
        + (f", {info['memory_gib']} GiB, driver {info['driver']}" if info.get("memory_gib") else "")
        + f"; {versions}",
        f"- bf16 peak: {_number(info.get('peak_bf16_tflops'), '{:.0f}', 'not in the table')} TFLOP/s "
        f"(spec sheet, dense); measured {_number(info.get('matmul_bf16_tflops'), '{:.3g}')} TFLOP/s "
        f"({info.get('matmul_n')}^3 bf16 matmul).",
        f"- Models: {MODELS['smoke' if info['smoke'] else 'full']}. Full fine-tuning, one process, each side in turn "
        "in the same process. Throughput is timed over the steps after a warm-up, CUDA "
        "synchronised at both ends; the warm-up column is the seconds before it (torch.compile "
        "compiles there). MFU: each example's training FLOPs (FlopCounterMode, forward and "
        "backward; for text on the example's own tokens, so padding counts as waste) x "
        "examples/s, over the spec's bf16 peak and over the measured matmul.",
        "",
        "| task | side | precision | batch | examples/s | ratio to hftl defaults | ratio to the example "
        "pipeline | MFU (spec) | MFU (matmul) | warm-up s | peak memory MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = results.get("training", [])
    for run in runs:
        if "samples_per_s" not in run:
            lines.append(
                f"| {run['task']} | {run['side']} | | | {run.get('failed') or run.get('skipped')} | | | | | | |"
            )
            continue
        spec, measured = mfu(run, flops, info) if flops else (None, None)
        lines.append(
            f"| {run['task']} | {run['side']} | {run['precision']} | {run['batch']} | {run['samples_per_s']:.1f} | "
            f"{_number(speedup(runs, run['task'], run['side']))} | "
            f"{_number(speedup(runs, run['task'], run['side'], over=BASELINE))} | "
            f"{_number(spec, '{:.1%}')} | {_number(measured, '{:.1%}')} | {run['warmup_s']:.1f} | "
            f"{_number(run['peak_memory_mib'], '{:.0f}')} |"
        )
    if flops:
        lines += ["", f"Training FLOPs per example: image {flops['image'] / 1e9:.4g} GFLOP, text "
                  f"{flops['text'] / 1e9:.4g} GFLOP (mean over the training reviews' tokens)."]  # fmt: skip
    extraction = results.get("extraction")
    if extraction and "floor_s" in extraction:
        lines += ["", f"Cached feature extraction (the ViT, bf16, {extraction['examples']} images): "
                  f"extraction {extraction['extraction_s']:.1f} s / one plain forward pass "
                  f"{extraction['floor_s']:.1f} s = {extraction['extraction_over_floor']:.2f}x; "
                  f"extraction and 3 epochs of the head: {extraction['training_over_floor']:.2f}x the floor."]  # fmt: skip
    elif extraction:
        lines += ["", f"Cached feature extraction: {extraction.get('failed')}"]
    lines += ["", "| accelerate config (one process) | result | checkpoint written | resumed | "
              "first run s | resumed run s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, launch in results.get("launch", {}).items():
        if launch["status"] in ("skipped",) or "failed_to_run" in launch:
            lines.append(
                f"| {LAUNCH_CONFIGS[name]} | {launch['status']}: {launch.get('why') or launch.get('failed_to_run')} | | | | |"
            )
            continue
        files = ", ".join(launch["checkpoint_files"][:6])
        lines.append(
            f"| {LAUNCH_CONFIGS[name]} | {launch['status']} (step {launch['final_step']} of "
            f"{launch['steps']}) | {files} | {launch['resumed'] or 'no'} | {launch['first_s']:.0f} | "
            f"{launch['second_s']:.0f} |"
        )
    decisions = results.get("decisions", {})
    if decisions:
        lines += ["", f"Defaults on this device, task by task (on where at least {MIN_SPEEDUP:.2f}x "
                  f"faster than the other setting; torch.compile also paid back within "
                  f"{TYPICAL_STEPS} steps):", "", "| knob | task | speed-up | default | why |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for knob, tasks in decisions.items():
            for task, found in tasks.items():
                state = {None: "undecided", False: "off", True: "on"}.get(found["on"], found["on"])
                why = found["why"]
                if found.get("payback_steps") is not None:
                    why += f"; paid back after {found['payback_steps']:.0f} steps"
                lines.append(
                    f"| `{knob}` | {task} | {_number(found['speedup'])}x | {state} | {why} |"
                )
    lines += ["", f"<!-- /{SECTION} -->"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The wheels the GPU machine lacks
# --------------------------------------------------------------------------------------------

# Not carried: the GPU machine's own builds (binary wheels) of these are used.
NOT_CARRIED = {"torch", "torchvision", "torchaudio", "triton", "numpy"}
# Binary dependencies the GPU machine's image lacks (KINDS.md's package list): carried too.
CARRIED_BINARY = {"kernels", "cffi", "soxr"}
# deepspeed (built here from its sdist: it has no wheel) and what it needs beyond the image;
# pydantic pins its core exactly
DEEPSPEED = ["hjson", "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types",
             "typing-inspection"]  # fmt: skip


def closure(requirement_names: list[str]) -> tuple[dict, dict]:
    """(pure-Python distributions, binary ones): name -> version as installed here, over the
    dependencies of ``requirement_names`` (extras left out); binary ones are not followed."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pure, binary, todo = {}, {}, list(requirement_names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pure or name in binary or name in NOT_CARRIED:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if "Root-Is-Purelib: false" in (dist.read_text("WHEEL") or ""):  # none: an editable hftl
            binary[name] = dist.version
            continue
        pure[name] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return pure, binary


def fetch_wheels(target: Path) -> None:
    """hftl's wheel, the pure-Python closure of its dependencies at the versions tested here,
    and DeepSpeed's wheel with its needs, for CPython 3.12 on x86-64 Linux, into ``target``."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    target.mkdir(parents=True, exist_ok=True)
    pure, binary = closure(["hftl"])
    pure.pop("hftl", None)
    platforms = []
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
        platforms += ["--platform", tag]
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target)]  # fmt: skip
    carried = {**pure, **{n: v for n, v in binary.items() if n in CARRIED_BINARY}}
    pinned = [f"{n}=={v}" for n, v in sorted(carried.items())]
    subprocess.run([*download, *pinned, *DEEPSPEED], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(target), str(ROOT)],
                   check=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as sdist:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", sdist, "deepspeed"], check=True)  # fmt: skip
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(target), *Path(sdist).glob("deepspeed-*")], check=True,
                       env={**os.environ, "DS_BUILD_OPS": "0"})  # fmt: skip
    carried_too = CARRIED_BINARY | {canonicalize_name(Requirement(r).name) for r in DEEPSPEED}
    binary = {n: v for n, v in binary.items() if n not in carried_too}
    (target / "binary_requirements.json").write_text(json.dumps(binary, indent=2))
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    print(
        f"{len(list(target.glob('*.whl')))} wheels, {size:.1f} MiB in {target}; binary "
        f"dependencies the GPU machine must have: {', '.join(sorted(binary))}"
    )


def binary_mismatches() -> list[str]:
    """The binary dependencies (the GPU machine's own) whose versions differ from the ones
    hftl was tested with here (``--fetch_wheels`` wrote them beside the wheels)."""
    listing = ROOT / ".whl" / "binary_requirements.json"
    if not listing.exists():
        return []
    found = []
    for name, version in json.loads(listing.read_text()).items():
        try:
            there = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            there = "missing"
        if there != version:
            found.append(f"{name} {there} (tested with {version})")
    return found


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


STAGES = ("training", "compile", "extraction", "launch")


def run_all(out: Path, smoke: bool, budget_s: float, command: str, stages=STAGES) -> dict:
    """Run ``stages`` in order, saving the results after each; work not sure to end within
    ``budget_s`` is left out and said so."""
    mode = "smoke" if smoke else "full"
    started = time.perf_counter()
    deadline = started + budget_s
    results: dict = {"command": command, "training": []}
    out.mkdir(parents=True, exist_ok=True)

    def save():
        results["minutes"] = round((time.perf_counter() - started) / 60, 2)
        results["decisions"] = decide(results["training"])
        (out / RESULTS).write_text(json.dumps(results, indent=2, default=str))
        (out / "gpu_section.md").write_text(report(results, command))

    results["device"] = device_info(smoke)
    results["device"]["binary_mismatches"] = binary_mismatches()
    print(json.dumps(results["device"]), flush=True)
    save()
    with tempfile.TemporaryDirectory(prefix="hftl-gpu-") as folder:
        work = Path(folder)
        paths = prepare(work, smoke)
        results["flops"] = flops_stage(paths)
        for stage in ("training", "compile"):
            if stage in stages:
                results["training"] += training_stage(
                    paths, work, mode, save, deadline, compiled=stage == "compile"
                )
        if "extraction" in stages:
            try:
                results["extraction"] = extraction_stage(paths, work, mode)
            except Exception as error:  # noqa: BLE001
                results["extraction"] = {"failed": one_line(error)}
            save()
        if "launch" in stages:
            results["launch"] = {}
            for name in LAUNCH_CONFIGS:
                left = deadline - time.perf_counter()
                if left < LAUNCH_MIN_S[mode]:
                    results["launch"][name] = {"status": "skipped", "why": "out of the time budget"}
                    continue
                try:
                    results["launch"][name] = launch_stage(
                        name, paths, work, mode, timeout=left / 2
                    )
                except Exception as error:  # noqa: BLE001
                    results["launch"][name] = {"status": "failed", "failed_to_run": one_line(error)}
                print(name, json.dumps(results["launch"][name])[:2000], flush=True)
                save()
        save()
    return results


def merged(files: list[str]) -> dict:
    """Results of several runs (a rerun of some stages after a first run): each later file's
    stages replace the earlier ones', its training sides replace the same task's and side's."""
    results: dict = {}
    for file in files:
        found = json.loads(Path(file).read_text())
        sides = {(r["task"], r["side"]): r for r in results.get("training", [])}
        sides.update({(r["task"], r["side"]): r for r in found.get("training", [])})
        launch = {**results.get("launch", {}), **found.get("launch", {})}
        results.update({k: v for k, v in found.items() if v})
        results["training"], results["launch"] = list(sides.values()), launch
    results["decisions"] = decide(results["training"])
    results["command"] = " and ".join(json.loads(Path(f).read_text())["command"] for f in files)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check_out", help="where gpu_results.json goes")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, every stage")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="a rerun of some stages (merge the results with --report A B)")  # fmt: skip
    parser.add_argument("--budget_s", type=float, default=420,
                        help="work not sure to end within this many seconds is left out")  # fmt: skip
    parser.add_argument(
        "--fetch_wheels", metavar="DIR", help="download the wheels the GPU machine lacks"
    )
    parser.add_argument("--report", nargs="+", metavar="RESULTS",
                        help="write the GPU section of --output from results files (later ones "
                        "replace the stages they ran)")  # fmt: skip
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        fetch_wheels(Path(args.fetch_wheels))
        return 0
    if args.report:
        from inference_benchmark import write_section

        results = merged(args.report)
        write_section(Path(args.output), report(results, results["command"]), SECTION)
        print(f"-> {args.output}")
        return 0
    command = "python scripts/gpu_check.py" + (" --smoke" if args.smoke else "")
    if list(args.stages) != list(STAGES):
        command += " --stages " + " ".join(args.stages)
    results = run_all(Path(args.out), args.smoke, args.budget_s, command, args.stages)
    print((Path(args.out) / "gpu_section.md").read_text())
    failed = [r["side"] for r in results["training"] if "failed" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
