"""Two real DDP ranks (gloo, CPU) through `accelerate launch`: the core and both recipes stay in sync."""

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
CPU_2PROC = os.path.join(os.path.dirname(__file__), "..", "recipes", "accelerate", "cpu_2proc.yaml")


def accelerate_launch(
    script: str, *script_args: str, config_file: str | None = None, timeout: int = 240,
    module: bool = False,
):  # fmt: skip
    """Two ranks on the CPU: the flags ENVIRONMENT.md found to start two, or the repo's config.
    ``module``: ``script`` is a module (``accelerate launch -m hftl train ...``)."""
    if config_file is None:
        topology = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    else:
        topology = ["--config_file", config_file]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", *topology,
        "--main_process_port", str(free_port()),
        *(["-m", script] if module else [os.path.join(SCRIPTS, script)]), *script_args,
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


@pytest.mark.ddp
def test_the_installed_entry_point_runs_under_accelerate_launch_as_a_module(tmp_path):
    """`accelerate launch -m hftl train TASK ...`: two ranks train one model, which rank 0 alone
    writes, and plain pipeline() loads."""
    from transformers import pipeline

    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    write_toy_reviews_csv(tmp_path / "train.csv", 64)
    out = tmp_path / "out"
    accelerate_launch(
        "hftl", "train", "text-classification", "--model_name_or_path", str(tmp_path / "bert"),
        "--train_file", str(tmp_path / "train.csv"), "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true",
        "--disable_tqdm", "true", "--save_strategy", "no", module=True,
    )  # fmt: skip
    info = json.loads((out / "run_info.json").read_text())
    assert info["training"]["world_size"] == 2 and info["hardware"]["processes"] == 2
    _assert_written_once(out)
    (scores,) = pipeline("text-classification", model=str(out), top_k=None)(["a wonderful film"])
    assert {score["label"] for score in scores} == {"negative", "positive"}


def _assert_identical_ranks(rank_dir):
    """Identical parameters on both ranks. (Running statistics of *trainable* BatchNorm layers
    may differ by the last step: DDP broadcasts buffers from rank 0 at the start of a forward.)"""
    meta = [json.loads((rank_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [m["world_size"] for m in meta] == [2, 2]
    assert meta[0]["wrapped"] == "DistributedDataParallel"
    rank0, rank1 = (torch.load(rank_dir / f"rank{r}.pt") for r in (0, 1))
    differing = [
        name for name in meta[0]["parameters"] if not torch.equal(rank0[name], rank1[name])
    ]
    assert differing == [], f"ranks drifted apart in {differing[:5]}"
    return meta, rank0, rank1


def _assert_written_once(out):
    """Rank 0 alone writes outputs: one model, and each logged line once in train.log."""
    assert len(list(out.glob("*.safetensors"))) == 1
    assert (out / "eval_report.json").is_file() and (out / "run_config.yaml").is_file()
    log = (out / "train.log").read_text()
    assert log.count("labels (single_label): [") == 1, "only rank 0 writes train.log"


@pytest.mark.ddp
def test_sentiment_recipe_under_ddp_with_the_repo_cpu_config(tmp_path, hub, monkeypatch):
    """Also pushes with --push_to_hub to the loopback Hub: rank 0 alone creates and commits."""
    from hftl.testing import save_tiny_text_checkpoint, toy_reviews, write_toy_reviews_csv

    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the ranks import huggingface_hub afresh
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    write_toy_reviews_csv(tmp_path / "train.csv", 120, labels=("negative", "neutral", "positive"))
    write_toy_reviews_csv(tmp_path / "test.csv", 21, labels=("negative", "positive"), seed=4)
    out = tmp_path / "out"
    accelerate_launch(
        "ddp_recipe.py", "sentiment", str(tmp_path / "ranks"),
        "--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "train.csv"),
        "--test_file", str(tmp_path / "test.csv"), "--per_device_eval_batch_size", "4",
        "--output_dir", str(out), "--strategy", "gradual", "--unfreeze_every", "2", "--unfreeze_unit", "step",
        "--max_steps", "8", "--per_device_train_batch_size", "8", "--weight_decay", "0.1",
        "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true",
        "--push_to_hub", "true", "--hub_model_id", "tester/ddp-sentiment",
        config_file=CPU_2PROC,
    )  # fmt: skip
    meta, rank0, rank1 = _assert_identical_ranks(tmp_path / "ranks")
    assert meta[0]["accuracy"] == meta[1]["accuracy"]
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # no BatchNorm: every tensor matches
    _assert_written_once(out)
    # --do_predict: 21 rows split over two ranks in batches of 4, written once, in order
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in toy_reviews(21, labels=("negative", "positive"), seed=4)]
    assert [r["input"] for r in rows] == texts and [r["index"] for r in rows] == list(range(21))
    report = json.loads((out / "predict_report.json").read_text())
    assert sum(c["support"] for c in report["per_class"].values()) == 21
    posts = [path for method, path, _, _ in hub.requests if method == "POST"]
    # One push: a second one (from rank 1) would at least ask /preupload, even if it then found
    # nothing new to commit. (Rank 0 creates the repo twice: Trainer at start, push_run again.)
    assert sum("/preupload/" in p for p in posts) == 1
    assert sum("/commit/" in p for p in posts) == 1
    pushed = hub.file("tester/ddp-sentiment", "model.safetensors")
    assert pushed == (out / "model.safetensors").read_bytes()


@pytest.mark.ddp
def test_guard_penalties_are_identical_on_both_ranks(tmp_path):
    """L2-SP and EWC together (one launch): each penalty is the same on both ranks, and not 0.
    EWC's Fisher is of the starting weights on the reference task (the same reviews, here)."""
    import json

    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    config = json.loads((tmp_path / "bert" / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "positive"}  # the reference task's labels
    config["label2id"] = {"negative": 0, "positive": 1}
    (tmp_path / "bert" / "config.json").write_text(json.dumps(config))
    write_toy_reviews_csv(tmp_path / "train.csv", 64)
    accelerate_launch(
        "ddp_recipe.py", "sentiment", str(tmp_path / "ranks"),
        "--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "train.csv"),
        "--output_dir", str(tmp_path / "out"), "--strategy", "full", "--guards", "l2sp", "ewc",
        "--l2sp_alpha", "1.0", "--ewc_lambda", "1.0", "--ewc_fisher_samples", "16",
        "--reference_train_file", str(tmp_path / "train.csv"), "--reference_max_eval_samples", "16",
        "--weight_decay", "0", "--max_steps", "4",
        "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true",
        "--save_strategy", "no", "--disable_tqdm", "true",
    )  # fmt: skip
    meta, _, _ = _assert_identical_ranks(tmp_path / "ranks")
    for guard in ("l2sp", "ewc"):
        penalties = [m["guard_penalties"][guard] for m in meta]
        assert penalties[0] == penalties[1] and penalties[0] > 0, guard


@pytest.mark.ddp
def test_lwf_and_replay_keep_the_ranks_identical(tmp_path):
    """LwF runs the trained backbone a second time outside DDP's forward, replay on rows each
    rank draws for itself: the gradients are still averaged, the weights still the same."""
    import json

    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    config = json.loads((tmp_path / "bert" / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "positive"}
    config["label2id"] = {"negative": 0, "positive": 1}
    (tmp_path / "bert" / "config.json").write_text(json.dumps(config))
    write_toy_reviews_csv(tmp_path / "train.csv", 64)
    write_toy_reviews_csv(tmp_path / "other.csv", 64, labels=("positive", "negative"), seed=3)
    accelerate_launch(
        "ddp_recipe.py", "sentiment", str(tmp_path / "ranks"),
        "--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "other.csv"),
        "--output_dir", str(tmp_path / "out"), "--strategy", "full", "--guards", "lwf", "replay",
        "--reference_train_file", str(tmp_path / "train.csv"), "--reference_max_eval_samples", "16",
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--report_to", "none",
        "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true",
        "--logging_strategy", "steps", "--logging_steps", "2",
    )  # fmt: skip
    _assert_identical_ranks(tmp_path / "ranks")
    logs = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    logged = [(e["guard_lwf"], e["guard_replay"]) for e in logs if "loss" in e]
    assert len(logged) == 2 and all(replay > 0 for _, replay in logged)
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["training"]["guards"] == ["lwf", "replay"] and "forgetting" in info["reference"]


@pytest.mark.ddp
def test_image_recipe_under_ddp(tmp_path):
    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    save_tiny_image_checkpoint(tmp_path / "model", "timm-resnet")
    write_toy_image_folder(tmp_path / "train", per_class=12, odd_modes=False)
    out = tmp_path / "out"
    accelerate_launch(
        "ddp_recipe.py", "image_classification", str(tmp_path / "ranks"),
        "--model_name_or_path", str(tmp_path / "model"), "--train_dir", str(tmp_path / "train"),
        "--output_dir", str(out), "--strategy", "partial", "--num_trainable_layers", "2",
        "--max_steps", "4", "--per_device_train_batch_size", "6", "--validation_split_percentage", "25",
        "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true",
        config_file=CPU_2PROC,
    )  # fmt: skip
    _, rank0, rank1 = _assert_identical_ranks(tmp_path / "ranks")
    _assert_written_once(out)
    # Frozen stages (stem, layer1, layer2) kept their BatchNorm statistics on both ranks.
    from safetensors.torch import load_file

    initial = load_file(tmp_path / "model" / "model.safetensors")
    frozen_stats = [
        k
        for k in rank0
        if "running_" in k and not k.startswith(("timm_model.layer3", "timm_model.layer4"))
    ]
    assert frozen_stats
    for name in frozen_stats:
        assert torch.equal(rank0[name], initial[name]) and torch.equal(
            rank1[name], initial[name]
        ), name


@pytest.mark.ddp
def test_resume_under_ddp_is_exact_and_checkpoints_hold_every_ranks_files(tmp_path):
    from hftl.checkpoints import CHECKPOINT_MARKER
    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    write_toy_reviews_csv(tmp_path / "train.csv", 120)
    common = ["--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "train.csv"),
              "--strategy", "full", "--max_steps", "12", "--save_steps", "3", "--per_device_train_batch_size", "8",
              "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true"]  # fmt: skip
    accelerate_launch("ddp_recipe.py", "sentiment", str(tmp_path / "a-ranks"), *common,
                      "--output_dir", str(tmp_path / "a"), config_file=CPU_2PROC)  # fmt: skip
    marker = json.loads((tmp_path / "a" / "checkpoint-3" / CHECKPOINT_MARKER).read_text())
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "model.safetensors"} <= set(
        marker["files"]
    )

    # 108 training rows, 16 a step over the 2 ranks: 7 steps an epoch, so checkpoint-3 is in the
    # middle of the first epoch and checkpoint-9 in the middle of the second.
    for step in (3, 9):
        ranks = tmp_path / f"b{step}-ranks"
        accelerate_launch("ddp_recipe.py", "sentiment", str(ranks), *common,
                          "--output_dir", str(tmp_path / f"b{step}"),
                          "--resume_from_checkpoint", str(tmp_path / "a" / f"checkpoint-{step}"),
                          config_file=CPU_2PROC)  # fmt: skip
        for rank in (0, 1):
            expected = torch.load(tmp_path / "a-ranks" / f"rank{rank}.pt")
            resumed = torch.load(ranks / f"rank{rank}.pt")
            differing = [k for k in expected if not torch.equal(expected[k], resumed[k])]
            assert differing == [], f"resumed at {step}, rank {rank}: {differing[:3]}"


@pytest.mark.ddp
def test_each_rank_extracts_its_share_of_the_features_and_every_rank_gets_them_all(tmp_path):
    """Two ranks split the extraction (augmented views and evaluation); each rank's own cache
    directory, or the one they share, gets the entries, equal to a single process's; a run with
    the same settings reads them on every rank."""
    import numpy as np
    from test_recipes import QUIET, run_recipe

    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    save_tiny_image_checkpoint(tmp_path / "vit", "vit")
    write_toy_image_folder(tmp_path / "train", per_class=7, odd_modes=False)
    write_toy_image_folder(tmp_path / "validation", per_class=3, seed=1, odd_modes=False)
    flags = ["--model_name_or_path", str(tmp_path / "vit"), "--train_dir", str(tmp_path / "train"),
             "--validation_dir", str(tmp_path / "validation"), "--strategy", "feature_extraction",
             "--augmentation", "true", "--feature_cache_views", "2", "--num_train_epochs", "2",
             "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", *QUIET]  # fmt: skip

    def entries(folder):
        return {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))}

    def launch(name, **env):
        os.environ.update(env)
        try:
            accelerate_launch("ddp_recipe.py", "image_classification", str(tmp_path / f"ranks-{name}"),
                              *flags, "--output_dir", str(tmp_path / f"out-{name}"),
                              *([] if env else ["--feature_cache_dir", str(tmp_path / "shared")]))  # fmt: skip
        finally:
            for key in env:
                os.environ.pop(key)
        return [json.loads((tmp_path / f"ranks-{name}" / f"rank{r}.json").read_text())["feature_cache"]
                for r in (0, 1)]  # fmt: skip

    per_rank = launch("per-rank", HFTL_TEST_CACHE_PER_RANK=str(tmp_path / "own"))
    ranks = per_rank[0]["ranks"]
    assert per_rank[0]["ranks"] == per_rank[1]["ranks"] and [r["rank"] for r in ranks] == [0, 1]
    # 21 training images x 2 views + 9 validation ones, in batches of 4: 6 and 3 batches
    assert [r["examples"] for r in ranks] == [2 * 12 + 4, 2 * 9 + 5]
    run_recipe("image_classification", [*flags, "--output_dir", str(tmp_path / "single"),
                                        "--feature_cache_dir", str(tmp_path / "alone")])  # fmt: skip
    alone = entries(tmp_path / "alone")
    assert len(alone) == 2 * 3  # 2 views + validation, x2 files
    for rank in (0, 1):  # each rank's own directory got every entry: a single process's
        own = entries(tmp_path / "own" / f"rank{rank}")
        assert set(own) == set(alone)
        for name, array in own.items():
            assert np.allclose(array, alone[name], atol=1e-5), name
    # a directory the ranks share: written once (rank 0), the same entries, nothing left over
    launch("shared")
    shared = entries(tmp_path / "shared")
    assert set(shared) == set(alone) and all(np.allclose(shared[n], alone[n], atol=1e-5)
                                             for n in alone)  # fmt: skip
    assert {p.name for p in (tmp_path / "shared").iterdir()} == set(alone)  # no probe, no .tmp
    again = launch("shared-again")  # the same settings: each rank reads the shared entries
    assert again[0]["reused"] == again[1]["reused"] == 3
    assert [r["examples"] for r in again[0]["ranks"]] == [0, 0]


@pytest.mark.ddp
def test_tune_runs_every_trial_on_both_ranks_with_the_same_values(tmp_path):
    """Advise's extraction and every trial run on both ranks; the main process draws the values
    and the other rank trains with the same ones (and measures the same metric); the best
    values then train once more, written by rank 0 alone."""
    optuna = pytest.importorskip("optuna")
    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    write_toy_reviews_csv(tmp_path / "train.csv", 64)
    out = tmp_path / "out"
    accelerate_launch(
        "ddp_tune.py", "text-classification", str(tmp_path / "ranks"),
        "--model_name_or_path", str(tmp_path / "bert"), "--train_file", str(tmp_path / "train.csv"),
        "--output_dir", str(out), "--strategy", "full", "--max_steps", "4",
        "--eval_strategy", "steps", "--eval_steps", "2", "--per_device_train_batch_size", "8",
        "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
        "--n_trials", "2", "--train_best",
    )  # fmt: skip
    runs = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert runs[0] == runs[1]
    assert [r["output_dir"] for r in runs[0]] == ["trial-000", "trial-001", "best"]
    assert all(r["world_size"] == 2 for r in runs[0])
    study = optuna.load_study(study_name="hftl-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.trials[0].user_attrs["source"] == "hftl advise"
    for trial, run in zip(study.trials, runs[0], strict=False):
        assert trial.params["learning_rate"] == pytest.approx(run["learning_rate"])
    best = max(study.trials, key=lambda t: t.value)
    assert runs[0][-1]["learning_rate"] == pytest.approx(best.params["learning_rate"])
    _assert_written_once(out / "best")
