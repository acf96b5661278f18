"""Forgetting guards switched on by name (``guards: [...]``): what each one does, mechanically."""

import pytest
import torch

from hftl import TransferTrainer
from hftl.layers import build_layer_map
from hftl.testing import TINY_MODELS, keyword_dataset, quiet_training_args


def trained(tmp_path, guards=None, strategy="full", steps=6, **overrides):
    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = quiet_training_args(
        tmp_path, strategy=strategy, max_steps=steps, per_device_train_batch_size=8,
        learning_rate=5e-3, weight_decay=0.0, lr_scheduler_type="constant", logging_steps=2,
        logging_strategy="steps", guards=guards, **overrides,
    )  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=keyword_dataset(32))
    trainer.train()
    return trainer, model, start


def distance(model, start, names):
    params = dict(model.named_parameters())
    return sum(((params[n] - start[n]) ** 2).sum().item() for n in names)


def test_l2sp_keeps_the_pretrained_weights_nearer_their_start(tmp_path):
    plain, model, start = trained(tmp_path / "plain")
    guarded, guarded_model, guarded_start = trained(tmp_path / "l2sp", ["l2sp"], l2sp_alpha=50.0)
    layer_map = build_layer_map(model)
    backbone = [n for n, d in layer_map.depths.items() if d < layer_map.head_depth]
    moved_plain = distance(model, start, backbone)
    moved_guarded = distance(guarded_model, guarded_start, backbone)
    assert moved_guarded < 0.5 * moved_plain, (moved_guarded, moved_plain)
    # its mean penalty since the last log is logged with the loss
    logged = [e["guard_l2sp"] for e in guarded.state.log_history if "loss" in e]
    assert len(logged) == 3 and all(value > 0 for value in logged)
    assert not any("guard_l2sp" in e for e in plain.state.log_history)


def test_l2sp_penalty_is_the_formula(tmp_path):
    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    args = quiet_training_args(tmp_path, strategy="full", max_steps=1, guards=["l2sp"],
                               l2sp_alpha=0.3, l2sp_beta=0.02)  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=keyword_dataset(8))
    (guard,) = trainer.guards
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))]
    expected_head = 0.02 / 2 * sum((p**2).sum().item() for p in head)
    assert guard.penalty(model, {}, None).item() == pytest.approx(expected_head, rel=1e-5)
    with torch.no_grad():  # move one backbone weight by 0.5: + alpha/2 * 0.25
        model.bert.encoder.layer[0].attention.self.query.weight[0, 0] += 0.5
    assert guard.penalty(model, {}, None).item() == pytest.approx(
        expected_head + 0.3 / 2 * 0.25, rel=1e-5
    )


def test_l2sp_under_feature_extraction_copies_no_backbone_and_penalises_the_head(tmp_path):
    torch.manual_seed(0)
    args = quiet_training_args(tmp_path, strategy="feature_extraction", max_steps=1,
                               guards=["l2sp"], feature_cache_dir="memory")  # fmt: skip
    trainer = TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    (guard,) = trainer.guards
    assert guard.start == [] and guard.head  # no copy of a backbone that cannot move
    assert guard.penalty(trainer.model, {}, None).item() > 0


def test_each_trainer_has_its_own_copy_of_a_guard(tmp_path):
    from hftl.guards import GUARDS

    args = quiet_training_args(tmp_path, strategy="full", max_steps=1, guards=["l2sp"])
    one = TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    two = TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    assert one.guards[0] is not two.guards[0] and not hasattr(GUARDS.get("l2sp"), "start")
    assert one.guards[0].start[0][0] is not two.guards[0].start[0][0]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"guards": ["l2sp"], "weight_decay": 0.01},
            r"guards \[l2sp\] with --weight_decay 0.01: L2-SP replaces decay toward zero",
        ),
        ({"guards": ["l2ps"]}, r"--guards l2ps: unknown guard 'l2ps' \(did you mean 'l2sp'\?\)"),
        ({"guards": ["early_stopping"]}, r"--guards early_stopping: turned on by its own option"),
        ({"guards": ["l2sp"], "l2sp_alpha": -1.0}, r"--l2sp_alpha -1.0: must be >= 0"),
    ],
)
def test_bad_guard_settings_are_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        quiet_training_args(tmp_path, **overrides)


def test_l2sp_through_the_recipe_is_recorded_and_described(tmp_path):
    import json

    from test_recipes import run_sentiment

    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(tmp_path / "train.csv", 48, seed=0)
    write_toy_reviews_csv(tmp_path / "validation.csv", 16, seed=1)
    out = tmp_path / "out"
    run_sentiment(tmp_path, out, "--guards", "l2sp", "--l2sp_alpha", "0.5", "--max_steps", "2")
    training = json.loads((out / "run_info.json").read_text())["training"]
    assert training["guards"] == ["l2sp"]
    assert training["l2sp"] == {"alpha": 0.5, "beta": 0.01}
    card = (out / "README.md").read_text()
    assert "L2-SP kept the pretrained weights near their starting values (alpha 0.5" in card


def test_a_step_is_the_same_under_gradient_accumulation_penalty_included(tmp_path):
    """One SGD step on 8 rows: as one batch of 8, or as 2 accumulated batches of 4, the task
    loss and the penalty move the weights the same (transformers alone would take the
    accumulated step at twice the rate: huggingface/transformers#47688)."""
    finals, losses = [], []
    for batch, accumulation in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = TINY_MODELS["bert"]()
        for module in model.modules():  # the same function of the rows in both runs
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        args = quiet_training_args(
            tmp_path / f"{batch}", strategy="full", max_steps=1, guards=["l2sp"], l2sp_beta=5.0,
            per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
            optim="sgd", learning_rate=0.1, weight_decay=0.0, lr_scheduler_type="constant",
            train_sampling_strategy="sequential",
        )  # fmt: skip
        losses.append(
            TransferTrainer.build(model, args, train_dataset=keyword_dataset(8))
            .train()
            .training_loss
        )
        finals.append({n: p.detach().clone() for n, p in model.named_parameters()})
    for name, value in finals[0].items():
        torch.testing.assert_close(finals[1][name], value, atol=2e-6, rtol=1e-4)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
