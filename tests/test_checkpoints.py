"""Checkpoints come back exactly: resume and best model, for every architecture (ViT, DeiT and Swin
are saved under other tensor names than they have in memory), timm, LoRA and cached features;
incomplete or mismatching checkpoints are errors; earlier runs' checkpoints are never taken for
this run's."""

import json
import logging

import pytest
import torch
from peft.utils import get_peft_model_state_dict, load_peft_weights
from safetensors.torch import load_file, save_file

from hftl import TransferTrainer
from hftl.checkpoints import (
    CHECKPOINT_MARKER,
    CheckpointError,
    checkpoint_problem,
    last_complete_checkpoint,
)
from hftl.errors import ConfigError
from hftl.feature_cache import unwrap
from hftl.testing import TINY_MODELS, colour_dataset, keyword_dataset, quiet_training_args

STEPS, EVERY, BATCH = 8, 2, 8  # 32 examples: 4 steps an epoch, checkpoints 2, 4, 6, 8
# case: (tiny model, strategy flags)
CASES = {
    "bert": ("bert", {"strategy": "full"}),
    "bert-mean": ("bert-mean", {"strategy": "gradual", "unfreeze_every": 3, "unfreeze_unit": "step"}),
    "vit": ("vit", {"strategy": "full"}),
    "deit": ("deit", {"strategy": "full"}),
    "swin": ("swin", {"strategy": "partial", "num_trainable_layers": 1}),
    "resnet": ("resnet", {"strategy": "full"}),
    "timm-resnet": ("timm-resnet", {"strategy": "gradual", "unfreeze_every": 3, "unfreeze_unit": "step"}),
    "lora-vit": ("vit", {"strategy": "lora", "lora_r": 4}),
    "lora-bert": ("bert", {"strategy": "lora", "lora_r": 4}),
    "cached-features-vit": ("vit", {"strategy": "feature_extraction", "feature_cache_dir": "memory"}),
}  # fmt: skip


def data_for(kind):
    return keyword_dataset(32, seed=1) if kind.startswith("bert") else colour_dataset(32, seed=1)


class ScriptedScore:
    """compute_metrics whose score peaks at the second evaluation (step 4), not the last."""

    def __init__(self, scores=(0.2, 0.9, 0.5, 0.4)):
        self.scores, self.calls = scores, 0

    def __call__(self, prediction):
        self.calls += 1
        return {"score": self.scores[self.calls - 1]}


def make_trainer(case, out, **overrides):
    kind, flags = CASES[case]
    torch.manual_seed(0)
    model = TINY_MODELS[kind]()
    settings = dict(save_strategy="steps", save_steps=EVERY, max_steps=STEPS, learning_rate=1e-2,
                    per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH)  # fmt: skip
    args = quiet_training_args(out, **{**settings, **flags, **overrides})
    data = data_for(kind)
    return TransferTrainer.build(model, args, train_dataset=data, eval_dataset=data,
                                 compute_metrics=ScriptedScore())  # fmt: skip


def weights(trainer) -> dict:
    model = unwrap(trainer.accelerator.unwrap_model(trainer.model))
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_equal(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def saved_weights(trainer, checkpoint) -> dict:
    """What the checkpoint holds, read independently of hftl: from_pretrained (PEFT: its own
    adapter reader), in the model's in-memory names."""
    model = unwrap(trainer.accelerator.unwrap_model(trainer.model))
    if hasattr(model, "peft_config"):
        return dict(load_peft_weights(str(checkpoint)))
    return dict(type(model).from_pretrained(checkpoint, config=model.config).state_dict())


def trained_part(trainer) -> dict:
    model = unwrap(trainer.accelerator.unwrap_model(trainer.model))
    if hasattr(model, "peft_config"):
        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return weights(trainer)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per case (computed on first use): its output dir and final weights."""
    runs = {}

    def get(case):
        if case not in runs:
            out = tmp_path_factory.mktemp(case)
            trainer = make_trainer(case, out)
            trainer.train()
            runs[case] = (out, weights(trainer))
        return runs[case]

    return get


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("step", [6, STEPS], ids=["middle", "last"])
def test_resume_ends_with_the_uninterrupted_runs_weights_exactly(
    uninterrupted, tmp_path, case, step
):
    out, expected = uninterrupted(case)
    resumed = make_trainer(case, tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(out / f"checkpoint-{step}"))
    assert resumed.state.global_step == STEPS
    assert_equal(weights(resumed), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_best_model_is_the_best_checkpoint_exactly(tmp_path, case):
    trainer = make_trainer(case, tmp_path, eval_strategy="steps", eval_steps=EVERY,
                           load_best_model_at_end=True, metric_for_best_model="score")  # fmt: skip
    trainer.train()
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-4")
    best = saved_weights(trainer, tmp_path / "checkpoint-4")
    last = saved_weights(trainer, tmp_path / f"checkpoint-{STEPS}")
    assert any(not torch.equal(best[k], last[k]) for k in best), "best == last: the test is void"
    assert_equal(trained_part(trainer), best)


def test_trainer_alone_would_resume_vit_wrongly(uninterrupted, tmp_path):
    """The upstream bug hftl works around (transformers issue 43701): Trainer's own loader leaves
    ViT's renamed tensors as they were in memory. If this starts failing, transformers fixed it."""
    import shutil

    from transformers import Trainer

    out, expected = uninterrupted("vit")
    checkpoint = (
        tmp_path / f"checkpoint-{STEPS}"
    )  # the weights and state, not hftl's optimizer groups
    shutil.copytree(
        out / checkpoint.name, checkpoint, ignore=shutil.ignore_patterns("optimizer.pt")
    )
    torch.manual_seed(0)
    args = quiet_training_args(tmp_path, max_steps=STEPS, per_device_train_batch_size=BATCH,
                               learning_rate=1e-2)  # fmt: skip
    plain = Trainer(TINY_MODELS["vit"](), args, train_dataset=data_for("vit"))
    plain.train(resume_from_checkpoint=str(checkpoint))
    differing = [k for k, v in plain.model.state_dict().items() if not torch.equal(v, expected[k])]
    assert differing and all(".layers." in k for k in differing)


# --------------------------------------------------------------------------------------------
# A checkpoint that does not match is an error
# --------------------------------------------------------------------------------------------


def test_a_checkpoint_missing_a_tensor_is_an_error_naming_it(uninterrupted, tmp_path):
    import shutil

    out, _ = uninterrupted("vit")
    broken = tmp_path / "checkpoint-6"
    shutil.copytree(out / "checkpoint-6", broken)
    state = load_file(broken / "model.safetensors")
    del state["classifier.bias"]
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    (broken / CHECKPOINT_MARKER).unlink()  # the marker would (rightly) call it truncated
    trainer = make_trainer("vit", tmp_path / "out")
    with pytest.raises(
        CheckpointError, match=r"does not match the model: 1 missing \(classifier\.bias\)"
    ):
        trainer.train(resume_from_checkpoint=str(broken))
    assert trainer.state.global_step == 0  # nothing trained


def test_a_checkpoint_of_another_head_size_is_an_error(uninterrupted, tmp_path):
    out, _ = uninterrupted("bert")
    torch.manual_seed(0)
    args = quiet_training_args(tmp_path, max_steps=STEPS, per_device_train_batch_size=BATCH)
    trainer = TransferTrainer(
        TINY_MODELS["bert"](num_labels=3), args, train_dataset=data_for("bert")
    )
    with pytest.raises(
        CheckpointError, match=r"checkpoint-6 does not match the model: .*classifier"
    ):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-6"))


def test_a_lora_checkpoint_of_another_rank_is_an_error(uninterrupted, tmp_path):
    out, _ = uninterrupted("lora-bert")
    trainer = make_trainer("lora-bert", tmp_path, lora_r=2)
    with pytest.raises(
        CheckpointError,
        match=r"of another shape \(.*lora_A.*\(4, 32\) in the checkpoint, \(2, 32\) in the model\)",
    ):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-6"))


# --------------------------------------------------------------------------------------------
# Complete or ignored
# --------------------------------------------------------------------------------------------


def test_every_checkpoint_is_marked_complete_and_a_truncated_one_is_not(uninterrupted, tmp_path):
    import shutil

    out, _ = uninterrupted("bert")
    assert [p.name for p in sorted(out.glob("checkpoint-*/" + CHECKPOINT_MARKER))] == [
        f"checkpoint-{s}/{CHECKPOINT_MARKER}".split("/")[1] for s in (2, 4, 6, 8)
    ]
    copy = tmp_path / "checkpoint-8"
    shutil.copytree(out / "checkpoint-8", copy)
    assert checkpoint_problem(copy) is None
    with open(copy / "optimizer.pt", "r+b") as handle:
        handle.truncate(100)
    assert "optimizer.pt has 100 bytes" in checkpoint_problem(copy)
    (copy / CHECKPOINT_MARKER).unlink()
    assert "still being written" in checkpoint_problem(copy)


def test_resume_true_skips_an_incomplete_checkpoint_with_a_log_line(
    uninterrupted, tmp_path, hftl_logs
):
    import shutil

    out, expected = uninterrupted("bert")
    run = tmp_path / "run"
    for step in (4, 6):
        shutil.copytree(out / f"checkpoint-{step}", run / f"checkpoint-{step}")
    (run / "checkpoint-6" / CHECKPOINT_MARKER).unlink()  # killed while writing checkpoint-6
    (run / "checkpoint-6" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(run) == run / "checkpoint-4"
    assert any("skipping incomplete checkpoint" in r.getMessage() and "checkpoint-6" in r.getMessage()
               for r in hftl_logs.records)  # fmt: skip
    trainer = make_trainer("bert", run)
    trainer.train(resume_from_checkpoint=True)
    assert_equal(weights(trainer), expected)
    assert checkpoint_problem(run / "checkpoint-6") is None  # rewritten, complete this time


def test_an_incomplete_checkpoint_named_explicitly_is_an_error(uninterrupted, tmp_path):
    import shutil

    out, _ = uninterrupted("bert")
    shutil.copytree(out / "checkpoint-6", tmp_path / "checkpoint-6")
    (tmp_path / "checkpoint-6" / CHECKPOINT_MARKER).unlink()
    (tmp_path / "checkpoint-6" / "trainer_state.json").unlink()
    trainer = make_trainer("bert", tmp_path / "out")
    with pytest.raises(
        CheckpointError, match=r"checkpoint-6: not a complete checkpoint \(no hftl_checkpoint.json"
    ):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    with pytest.raises(CheckpointError, match="no complete checkpoint in"):
        trainer.train(resume_from_checkpoint=True)


def test_a_plain_transformers_checkpoint_without_marker_is_accepted(uninterrupted, tmp_path):
    import shutil

    out, expected = uninterrupted("deit")
    shutil.copytree(out / "checkpoint-6", tmp_path / "checkpoint-6")
    (tmp_path / "checkpoint-6" / CHECKPOINT_MARKER).unlink()  # as transformers alone writes it
    trainer = make_trainer("deit", tmp_path / "out")
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert_equal(weights(trainer), expected)


def test_an_earlier_runs_checkpoints_are_never_taken_for_this_runs(uninterrupted, tmp_path):
    import shutil

    out, expected = uninterrupted("bert")
    run = tmp_path / "run"
    shutil.copytree(out, run)
    # Starting over at step 0 among another run's checkpoints: refused, unless overwriting.
    with pytest.raises(
        ConfigError, match=r"holds checkpoints of an earlier run .*--overwrite_output_dir true"
    ):
        make_trainer("bert", run).train()
    # Resuming at step 4 and stopping at 5: the earlier run's 6 and 8 are no longer complete.
    trainer = make_trainer("bert", run, max_steps=5)
    trainer.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert [checkpoint_problem(run / f"checkpoint-{s}") is None for s in (2, 4, 5, 6, 8)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert last_complete_checkpoint(run, log=False) == run / "checkpoint-5"
    # The same from a checkpoint folder of another name: its step comes from trainer_state.json.
    shutil.copytree(
        out / "checkpoint-8", run / "checkpoint-8", dirs_exist_ok=True
    )  # complete again
    shutil.copytree(out / "checkpoint-4", tmp_path / "best")
    make_trainer("bert", run, max_steps=5).train(resume_from_checkpoint=str(tmp_path / "best"))
    assert checkpoint_problem(run / "checkpoint-8") is not None
    # --overwrite_output_dir: removed, and the run starts over.
    trainer = make_trainer("bert", run, overwrite_output_dir=True)
    trainer.train()
    assert_equal(weights(trainer), expected)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == [
        f"checkpoint-{s}" for s in (2, 4, 6, 8)
    ]
    assert all(checkpoint_problem(p) is None for p in run.glob("checkpoint-*"))


def test_a_second_train_call_may_continue_in_its_own_output_dir(tmp_path):
    trainer = make_trainer("bert", tmp_path, max_steps=4)
    trainer.train()
    trainer.train()  # e.g. a second stage: its own checkpoints do not count as another run's
    assert (
        json.loads((tmp_path / "checkpoint-4" / CHECKPOINT_MARKER).read_text())["global_step"] == 4
    )


def test_trainer_load_warnings_are_replaced_by_one_exact_load_line(
    uninterrupted, tmp_path, hftl_logs, caplog
):
    out, _ = uninterrupted("vit")
    trainer = make_trainer("vit", tmp_path)
    with caplog.at_level(logging.WARNING, logger="transformers.trainer"):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-6"))
    assert not [r for r in caplog.records if "keys in the checkpoint" in r.getMessage()]
    assert any(
        "resumed from" in r.getMessage() and "exactly" in r.getMessage() for r in hftl_logs.records
    )


def test_length_grouped_order_depends_on_seed_and_epoch_only():
    """So a run resumed in the middle of epoch 3 trains on epoch 3's order (transformers' own
    sampler draws it from whatever the global RNG holds when the epoch starts)."""
    from hftl.trainer import LengthGroupedOrder

    lengths = [
        int(n) for n in torch.randint(3, 60, (200,), generator=torch.Generator().manual_seed(0))
    ]
    ordered = LengthGroupedOrder(list(range(200)), lengths, batch_size=8, seed=3)

    def order(epoch):
        torch.manual_seed(epoch * 17)  # whatever the global RNG holds: no effect
        ordered.set_epoch(epoch)
        return [ordered[i] for i in range(len(ordered))]

    first, second = order(1), order(2)
    assert sorted(first) == list(range(200)) and first != second
    assert order(1) == first and order(2) == second
    batches = [first[i : i + 8] for i in range(0, 200, 8)]
    padded = sum(8 * max(lengths[j] for j in b) for b in batches)
    assert padded < 0.8 * 200 * max(lengths)  # still grouped by length
