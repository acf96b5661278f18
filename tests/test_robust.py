"""Robust fine-tuning: ``strategy: lp_ft`` (linear probe, then fine-tuning) and the ``wise_ft``
guard (the fine-tuned weights mixed with the starting ones), mechanically."""

import json

import numpy as np
import pytest
import torch

from hftl import TransferTrainer
from hftl.errors import ConfigError
from hftl.families import split_for
from hftl.feature_cache import extract
from hftl.layers import build_layer_map
from hftl.shapes import fit_linear_probe
from hftl.testing import TINY_MODELS, colour_dataset, keyword_dataset, quiet_training_args


def vit_trainer(tmp_path, steps=4, seed=0, **overrides):
    torch.manual_seed(seed)
    model = TINY_MODELS["vit"](num_labels=3)
    args = quiet_training_args(
        tmp_path, max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-2,
        lr_scheduler_type="constant", weight_decay=0.0, feature_cache_dir=str(tmp_path / "cache"),
        **overrides,
    )  # fmt: skip
    trainer = TransferTrainer.build(
        model,
        args,
        train_dataset=colour_dataset(24, seed=0),
        eval_dataset=colour_dataset(12, seed=1),
    )
    return trainer, model


def state(model):
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def head_names(model):
    layer_map = build_layer_map(model)
    return set(layer_map.names_at(layer_map.head_depth))


# ---------------------------------------------------------------------------------------------
# LP-FT
# ---------------------------------------------------------------------------------------------


def test_lp_ft_starts_from_the_probe_fitted_on_the_pretrained_features(tmp_path):
    torch.manual_seed(0)
    pretrained = state(TINY_MODELS["vit"](num_labels=3))
    trainer, model = vit_trainer(tmp_path, strategy="lp_ft")
    # the backbone is untouched, the head is the probe fitted on the backbone's own features
    split = split_for(model)
    features, labels = extract(model, split, colour_dataset(24, seed=0), None, batch_size=8,
                               device=torch.device("cpu"))  # fmt: skip
    probe = fit_linear_probe(features, labels, 3, seed=0)
    assert torch.allclose(model.classifier.weight, probe["weight"], atol=1e-6)
    assert torch.allclose(model.classifier.bias, probe["bias"], atol=1e-6)
    now = state(model)
    assert all(torch.equal(now[n], pretrained[n]) for n in now if not n.startswith("classifier"))
    assert trainer.feature_cache["linear_probe"]["folds"] >= 2
    # then everything trains from it
    trainer.train()
    moved = {n for n, t in state(model).items() if not torch.equal(t, now[n])}
    assert "vit.embeddings.patch_embeddings.projection.weight" in moved
    assert {n for n in moved if n.startswith("classifier")} == {
        "classifier.weight",
        "classifier.bias",
    }


def test_lp_ft_reuses_the_cached_features_of_the_training_set(tmp_path):
    first, _ = vit_trainer(tmp_path, strategy="lp_ft")
    second, _ = vit_trainer(tmp_path, strategy="lp_ft")
    assert first.feature_cache["reused"] == 0 and second.feature_cache["reused"] == 1
    assert first.feature_cache["linear_probe"]["C"] == second.feature_cache["linear_probe"]["C"]


def test_lp_ft_through_the_recipe_is_recorded_and_described(tmp_path):
    from test_recipes import run_sentiment

    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(tmp_path / "train.csv", 48, seed=0)
    write_toy_reviews_csv(tmp_path / "validation.csv", 16, seed=1)
    out = tmp_path / "out"
    # the BERT classifier's pooler is not linear: refused in one line, before training
    with pytest.raises(ConfigError, match="strategy lp_ft: BertForSequenceClassification's head"):
        run_sentiment(tmp_path, tmp_path / "refused", "--strategy", "lp_ft", "--max_steps", "2")
    run_sentiment(tmp_path, out, "--strategy", "lp_ft", "--pooling", "mean", "--max_steps", "2",
                  "--feature_cache_dir", "memory")  # fmt: skip
    training = json.loads((out / "run_info.json").read_text())["training"]
    assert training["strategy"] == "lp_ft"
    probe = training["feature_cache"]["linear_probe"]
    assert probe["folds"] >= 2 and probe["C"] > 0
    card = (out / "README.md").read_text()
    assert "LP-FT: the new head was first fitted by a logistic regression" in card
    assert f"C = {probe['C']:g}" in card


# ---------------------------------------------------------------------------------------------
# WiSE-FT
# ---------------------------------------------------------------------------------------------


def test_wise_ft_at_0_and_1_gives_the_start_and_the_fine_tuned_weights_exactly(tmp_path):
    plain, plain_model = vit_trainer(tmp_path / "plain", strategy="full")
    start = state(plain_model)
    plain.train()
    fine_tuned = state(plain_model)
    head = head_names(plain_model)

    at_one, model_one = vit_trainer(tmp_path / "one", strategy="full", guards=["wise_ft"],
                                    wise_ft_alpha=1.0)  # fmt: skip
    at_one.train()
    assert all(torch.equal(t, fine_tuned[n]) for n, t in state(model_one).items())

    at_zero, model_zero = vit_trainer(tmp_path / "zero", strategy="full", guards=["wise_ft"],
                                      wise_ft_alpha=0.0)  # fmt: skip
    at_zero.train()
    for name, tensor in state(model_zero).items():  # a head that started random: the trained one
        assert torch.equal(tensor, fine_tuned[name] if name in head else start[name]), name
    # both end points are on disk, under the saved names
    from safetensors.torch import load_file

    ends = tmp_path / "zero" / "wise_ft"
    assert all(torch.equal(t, start[n]) for n, t in load_file(ends / "start.safetensors").items())
    saved_end = load_file(ends / "fine_tuned.safetensors")
    assert all(torch.equal(t, fine_tuned[n]) for n, t in saved_end.items())


def test_wise_ft_after_lp_ft_mixes_the_head_too_and_the_midpoint_is_the_mean(tmp_path):
    plain, model = vit_trainer(tmp_path / "plain", strategy="lp_ft")
    start = state(model)  # the probe's head on the pretrained backbone
    plain.train()
    fine_tuned = state(model)

    mixed, mixed_model = vit_trainer(tmp_path / "half", strategy="lp_ft", guards=["wise_ft"],
                                     wise_ft_alpha=0.5)  # fmt: skip
    mixed.train()
    for name, tensor in state(mixed_model).items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (start[name] + fine_tuned[name]) / 2)
    zero, zero_model = vit_trainer(tmp_path / "zero", strategy="lp_ft", guards=["wise_ft"],
                                   wise_ft_alpha=0.0)  # fmt: skip
    zero.train()
    assert all(torch.equal(t, start[n]) for n, t in state(zero_model).items())


def test_wise_ft_sweep_evaluates_each_alpha_and_keeps_the_chosen_one(tmp_path):
    plain, _ = vit_trainer(tmp_path / "plain", strategy="full")
    plain.train()
    fine_tuned_loss = plain.evaluate()["eval_loss"]
    trainer, model = vit_trainer(tmp_path / "sweep", strategy="full", guards=["wise_ft"],
                                 wise_ft_alpha=0.5, wise_ft_sweep=[0.0, 0.5, 1.0])  # fmt: skip
    trainer.train()
    (guard,) = trainer.guards
    assert [point["alpha"] for point in guard.sweep] == [0.0, 0.5, 1.0]
    by_alpha = {point["alpha"]: point for point in guard.sweep}
    assert by_alpha[1.0]["loss"] == pytest.approx(fine_tuned_loss)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(by_alpha[0.5]["loss"])
    assert any("eval_wise_ft_0.5_loss" in entry for entry in trainer.state.log_history)
    assert guard.run_info(trainer.args)["wise_ft"]["sweep"] == guard.sweep


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"strategy": "feature_extraction"}, r"guards \[wise_ft\] with strategy feature_extracti"),
        ({"strategy": "lora"}, r"guards \[wise_ft\] with strategy lora: the pretrained weights"),
        ({"wise_ft_alpha": 1.5}, r"--wise_ft_alpha 1.5: must be in \[0, 1\]"),
        ({"wise_ft_sweep": [0.5, -0.1]}, r"--wise_ft_sweep -0.1: must be in \[0, 1\]"),
    ],
)
def test_bad_wise_ft_settings_are_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        quiet_training_args(tmp_path, **{"guards": ["wise_ft"], **overrides})


def test_hftl_wise_ft_mixes_a_finished_run_anew(tmp_path, capsys):
    from safetensors.torch import load_file
    from test_recipes import run_sentiment
    from transformers import AutoModelForSequenceClassification

    from hftl.cli import main as hftl_main
    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(tmp_path / "train.csv", 48, seed=0)
    write_toy_reviews_csv(tmp_path / "validation.csv", 16, seed=1)
    run = tmp_path / "run"
    run_sentiment(tmp_path, run, "--guards", "wise_ft", "--wise_ft_alpha", "1", "--max_steps", "3",
                  "--wise_ft_sweep", "0", "1")  # fmt: skip
    training = json.loads((run / "run_info.json").read_text())["training"]
    assert training["wise_ft"]["head"] == "fine-tuned" and training["wise_ft"]["head_tensors"]
    card = (run / "README.md").read_text()
    assert (
        "WiSE-FT: the published weights are 0 x the starting weights + 1 x the fine-tuned" in card
    )
    assert "Validation accuracy by alpha: 0: " in card

    mixed = tmp_path / "mixed"
    assert hftl_main(["wise-ft", str(run), "--alpha", "0.25", "--output_dir", str(mixed)]) == 0
    start = load_file(run / "wise_ft" / "start.safetensors")
    end = load_file(run / "wise_ft" / "fine_tuned.safetensors")
    head = set(training["wise_ft"]["head_tensors"])
    loaded = AutoModelForSequenceClassification.from_pretrained(mixed).state_dict()
    for name, tensor in load_file(mixed / "model.safetensors").items():
        expected = end[name] if name in head else 0.75 * start[name] + 0.25 * end[name]
        torch.testing.assert_close(tensor, expected)
        assert torch.equal(loaded[name], tensor)
    info = json.loads((mixed / "run_info.json").read_text())["training"]["wise_ft"]
    assert info["alpha"] == 0.25 and info["evaluated"] is False
    assert not (mixed / "eval_report.json").exists() and not (mixed / "README.md").exists()
    assert "not evaluated" in capsys.readouterr().out
    # a directory that is not such a run, or a used output directory: one line each
    assert hftl_main(["wise-ft", str(tmp_path / "bert"), "--alpha", "0.5", "--output_dir",
                      str(tmp_path / "x")]) == 2  # fmt: skip
    assert (
        "no run_info.json; give the output directory of a finished run" in capsys.readouterr().err
    )
    assert hftl_main(["wise-ft", str(run), "--alpha", "0.5", "--output_dir", str(mixed)]) == 2
    assert "not empty; give a new directory" in capsys.readouterr().err


def test_a_resumed_wise_ft_run_needs_the_start_it_began_from(tmp_path):
    trainer, _ = vit_trainer(tmp_path, strategy="full", guards=["wise_ft"], save_strategy="steps",
                             save_steps=2)  # fmt: skip
    trainer.train()
    (tmp_path / "wise_ft" / "start.safetensors").unlink()
    again, _ = vit_trainer(tmp_path, strategy="full", guards=["wise_ft"], save_strategy="steps",
                           save_steps=2, steps=6)  # fmt: skip
    with pytest.raises(ConfigError, match=r"guards \[wise_ft\]: resuming in .* is not there"):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))


def test_keyword_guards_compose_wise_ft_with_l2sp(tmp_path):
    torch.manual_seed(0)
    args = quiet_training_args(tmp_path, strategy="full", max_steps=2, guards=["l2sp", "wise_ft"],
                               weight_decay=0.0, wise_ft_alpha=0.0)  # fmt: skip
    model = TINY_MODELS["bert"]()
    start = state(model)
    trainer = TransferTrainer.build(model, args, train_dataset=keyword_dataset(16))
    trainer.train()
    assert [g.name for g in trainer.guards] == ["l2sp", "wise_ft"]
    head = head_names(model)
    now = state(model)
    assert all(torch.equal(now[n], start[n]) for n in now if n not in head)
    assert any(not torch.equal(now[n], start[n]) for n in head)
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_the_wise_ft_end_points_are_not_pushed(tmp_path):
    from hftl.hub import _files_to_push

    for name in ("model.safetensors", "config.json", "wise_ft/start.safetensors",
                 "wise_ft/fine_tuned.safetensors"):  # fmt: skip
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    pushed = {p.relative_to(tmp_path).as_posix() for p in _files_to_push(tmp_path)}
    assert pushed == {"model.safetensors", "config.json"}
