"""The reference task (``--reference_*``): forgetting measured on it, and the ``ewc`` guard that
uses it, mechanically."""

import copy
import json

import pytest
import torch
from transformers import default_data_collator

from hftl import TransferTrainer
from hftl.errors import ConfigError
from hftl.guards.ewc import FISHER_FILE, fisher_diagonal, normalised
from hftl.layers import build_layer_map
from hftl.reference import Reference
from hftl.testing import TINY_MODELS, keyword_dataset, quiet_training_args


def reference_of(model, keyword=7):
    """Task A: the keyword task the tiny model answers with its own head."""
    model = copy.deepcopy(model)
    model.config.id2label, model.config.label2id = {0: "no", 1: "yes"}, {"no": 0, "yes": 1}
    return Reference(model, ["no", "yes"], keyword_dataset(32, keyword=keyword, seed=5),
                     keyword_dataset(24, keyword=keyword, seed=6), default_data_collator, "task-a")  # fmt: skip


def fine_tuned(tmp_path, guards=None, steps=6, model=None, **overrides):
    torch.manual_seed(0)
    model = model or TINY_MODELS["bert"]()
    reference = reference_of(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = quiet_training_args(
        tmp_path, strategy="full", max_steps=steps, per_device_train_batch_size=8,
        learning_rate=5e-3, weight_decay=0.0, lr_scheduler_type="constant", guards=guards,
        logging_steps=2, logging_strategy="steps", **overrides,
    )  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=keyword_dataset(32, keyword=3),
                                    reference=reference)  # fmt: skip
    trainer.train()
    return trainer, model, start, reference


def backbone(model):
    layer_map = build_layer_map(model)
    return [n for n, d in layer_map.depths.items() if d < layer_map.head_depth]


def test_ewc_keeps_the_weights_the_reference_task_needs_nearer_their_start(tmp_path):
    plain, plain_model, start, _ = fine_tuned(tmp_path / "plain")
    guarded, model, guarded_start, _ = fine_tuned(tmp_path / "ewc", ["ewc"], ewc_lambda=200.0)
    (guard,) = guarded.guards
    fisher = guard.fisher

    def weighted(m, s):  # sum F (w - w0)^2: what EWC penalises
        params = dict(m.named_parameters())
        return sum(float((fisher[n] * (params[n].detach() - s[n]) ** 2).sum()) for n in fisher)

    assert weighted(model, guarded_start) < 0.5 * weighted(plain_model, start)
    logged = [e["guard_ewc"] for e in guarded.state.log_history if "loss" in e]
    assert len(logged) == 3 and all(value > 0 for value in logged)
    # the Fisher covers the backbone that trains, not the new head
    assert set(fisher) == set(backbone(model)) - set(build_layer_map(model).kept_frozen)


def test_the_fisher_is_the_mean_squared_per_example_gradient_divided_by_its_mean():
    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    data = keyword_dataset(5)
    params = {"classifier.weight": model.classifier.weight,
              "bert.encoder.layer.0.output.dense.weight": model.bert.encoder.layer[0].output.dense.weight}  # fmt: skip
    fisher = fisher_diagonal(model, params, data, default_data_collator, samples=5,
                             kind="empirical", seed=0)  # fmt: skip
    model.eval()
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for row in data:
        batch = default_data_collator([row])
        labels = batch.pop("labels")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        grads = torch.autograd.grad(loss, list(params.values()))
        for name, grad in zip(params, grads, strict=True):
            expected[name] += grad**2 / 5
    for name in params:
        torch.testing.assert_close(fisher[name], expected[name])
    scaled = normalised(fisher)
    total = sum(float(f.sum()) for f in scaled.values())
    assert total / sum(f.numel() for f in scaled.values()) == pytest.approx(1.0)
    # true Fisher: labels drawn from the model, reproducibly for a seed
    one = fisher_diagonal(
        model, params, data, default_data_collator, samples=5, kind="true", seed=1
    )
    two = fisher_diagonal(
        model, params, data, default_data_collator, samples=5, kind="true", seed=1
    )
    assert all(torch.equal(one[n], two[n]) for n in params)


def test_ewc_penalty_is_the_formula(tmp_path):
    trainer, model, _, _ = fine_tuned(tmp_path, ["ewc"], steps=1, ewc_lambda=0.3)
    (guard,) = trainer.guards
    params = dict(model.named_parameters())
    expected = (
        0.3
        / 2
        * sum(
            float((guard.fisher[n] * (params[n].detach() - guard.start[n]) ** 2).sum())
            for n in guard.fisher
        )
    )
    assert guard.penalty(model, {}, None).item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0


def test_the_fisher_is_saved_with_the_run_and_read_back_on_resume(tmp_path):
    from safetensors.torch import load_file, save_file

    trainer, _, _, _ = fine_tuned(tmp_path, ["ewc"], steps=4, save_strategy="steps", save_steps=2)
    saved = load_file(tmp_path / FISHER_FILE)
    (guard,) = trainer.guards
    assert set(saved) == set(guard.fisher)
    assert all(torch.equal(saved[n], guard.fisher[n].cpu()) for n in saved)
    # a resumed run reads the file (here made recognisable) instead of computing it again
    save_file({n: torch.full_like(f, 2.0) for n, f in saved.items()}, tmp_path / FISHER_FILE)
    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    args = quiet_training_args(tmp_path, strategy="full", max_steps=6, per_device_train_batch_size=8,
                               guards=["ewc"], save_strategy="steps", save_steps=2)  # fmt: skip
    again = TransferTrainer.build(model, args, train_dataset=keyword_dataset(32, keyword=3),
                                  reference=reference_of(model))  # fmt: skip
    again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    assert all(bool((f == 2.0).all()) for f in again.guards[0].fisher.values())


def test_online_ewc_adds_the_decayed_fisher_saved_beside_the_starting_model(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    model.save_pretrained(tmp_path / "previous")
    first, _, _, _ = fine_tuned(tmp_path / "alone", ["ewc"], steps=1, model=copy.deepcopy(model))
    alone = first.guards[0].fisher
    save_file(
        {n: torch.ones_like(f) for n, f in alone.items()}, tmp_path / "previous" / FISHER_FILE
    )
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "previous")
    online, _, _, _ = fine_tuned(tmp_path / "online", ["ewc"], steps=1, model=loaded, ewc_gamma=0.5)
    for name, value in online.guards[0].fisher.items():
        torch.testing.assert_close(value, alone[name] + 0.5)
    assert online.guards[0].run_info(online.args)["ewc"]["online"] is True


def test_ewc_refusals_are_one_line(tmp_path):
    args = quiet_training_args(tmp_path, strategy="full", max_steps=1, guards=["ewc"])
    with pytest.raises(ConfigError, match=r"guards \[ewc\] needs the reference task"):
        TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    torch.manual_seed(0)
    other = TINY_MODELS["bert"]()
    torch.manual_seed(1)
    with pytest.raises(ConfigError, match=r"guards \[ewc\]: the backbone of .* is not the one"):
        TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8),
                              reference=reference_of(other))  # fmt: skip
    with pytest.raises(ConfigError, match=r"its backbone is not the trained model's"):
        TransferTrainer.build(TINY_MODELS["roberta"](), args, train_dataset=keyword_dataset(8),
                              reference=reference_of(other))  # fmt: skip
    with pytest.raises(ValueError, match=r"guards \[ewc\] with strategy feature_extraction"):
        quiet_training_args(tmp_path, strategy="feature_extraction", guards=["ewc"])


def test_forgetting_through_the_recipe_is_measured_recorded_and_described(tmp_path):
    from test_recipes import run_images
    from transformers import AutoModelForImageClassification, pipeline

    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    write_toy_image_folder(tmp_path / "train", per_class=12, seed=0, odd_modes=False)
    write_toy_image_folder(tmp_path / "validation", per_class=6, seed=1, odd_modes=False)
    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)
    task_a = tmp_path / "a"
    run_images(tmp_path, "vit", task_a, "--max_steps", "12")  # task A: three colours
    write_toy_image_folder(tmp_path / "b" / "train", per_class=12, classes=("red", "blue"), seed=2)
    write_toy_image_folder(
        tmp_path / "b" / "validation", per_class=4, classes=("red", "blue"), seed=3
    )
    argv = ["--model_name_or_path", str(task_a), "--train_dir", str(tmp_path / "b" / "train"),
            "--validation_dir", str(tmp_path / "b" / "validation"), "--output_dir", str(tmp_path / "out"),
            "--reference_train_dir", str(tmp_path / "train"),
            "--reference_validation_dir", str(tmp_path / "validation"),
            "--guards", "ewc", "--max_steps", "6", "--learning_rate", "2e-2"]  # fmt: skip
    from test_recipes import QUIET, run_recipe

    run_recipe("image_classification", [*argv, *QUIET])
    out = tmp_path / "out"
    info = json.loads((out / "run_info.json").read_text())
    reference = info["reference"]
    # before: task A's own model on task A's validation images, as its run measured it
    assert reference["accuracy_before"] == pytest.approx(
        json.loads((task_a / "eval_report.json").read_text())["accuracy"], abs=1e-4
    )
    # after: task A's head on the new backbone, measured here independently through pipeline()
    mixed = AutoModelForImageClassification.from_pretrained(task_a)
    trained = AutoModelForImageClassification.from_pretrained(out).state_dict()
    mixed.load_state_dict({k: v for k, v in trained.items() if not k.startswith("classifier")},
                          strict=False)  # fmt: skip
    classify = pipeline("image-classification", model=mixed, image_processor=str(task_a))
    files = sorted((tmp_path / "validation").glob("*/*"))
    right = sum(classify(str(f), top_k=1)[0]["label"] == f.parent.name for f in files)
    assert reference["accuracy_after"] == pytest.approx(right / len(files), abs=1e-4)
    assert reference["forgetting"] == pytest.approx(
        reference["accuracy_before"] - reference["accuracy_after"], abs=1e-4
    )
    assert reference["validation_rows"] == len(files) == 18
    assert (out / FISHER_FILE).is_file() and info["training"]["ewc"]["lambda"] == 1.0
    card = (out / "README.md").read_text()
    assert "EWC (lambda 1.0) pulled each pretrained weight" in card
    assert f"accuracy {reference['accuracy_before']:.4f} before training" in card


def test_reference_data_with_labels_the_model_does_not_know_is_refused(tmp_path):
    from test_recipes import QUIET, run_images

    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    write_toy_image_folder(tmp_path / "train", per_class=6, seed=0, odd_modes=False)
    write_toy_image_folder(tmp_path / "validation", per_class=3, seed=1, odd_modes=False)
    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)
    run_images(tmp_path, "vit", tmp_path / "a", "--max_steps", "1")
    write_toy_image_folder(tmp_path / "odd", per_class=3, classes=("red", "blue"), seed=4)
    (tmp_path / "odd" / "blue").rename(tmp_path / "odd" / "purple")
    flags = ["--model_name_or_path", str(tmp_path / "a"), "--max_steps", "1", *QUIET]
    with pytest.raises(ConfigError, match=r"reference data: labels purple are not among the "):
        run_images(tmp_path, "vit", tmp_path / "b", *flags, "--reference_train_dir",
                   str(tmp_path / "odd"), "--reference_validation_dir", str(tmp_path / "odd"))  # fmt: skip
    # the reference data's own problems name the reference flags
    with pytest.raises(ConfigError, match=r"reference data: .*--reference_validation_dir"):
        run_images(tmp_path, "vit", tmp_path / "c", *flags, "--reference_train_dir",
                   str(tmp_path / "odd"))  # fmt: skip


def reference_kl(trainer, reference, data):
    """KL(original reference model || reference head on the trained backbone) on ``data``."""
    from hftl.reference import ReferenceHead

    head = ReferenceHead(reference, trainer.model, "test")
    batch = default_data_collator([data[i] for i in range(len(data))])
    trainer.model.eval()
    original = copy.deepcopy(reference.model)
    with torch.no_grad():
        student = torch.log_softmax(head.logits(trainer.model, batch), -1)
        teacher = torch.log_softmax(original(input_ids=batch["input_ids"]).logits, -1)
    return float(
        torch.nn.functional.kl_div(student, teacher, reduction="batchmean", log_target=True)
    )


def test_lwf_keeps_the_reference_heads_outputs_closer_to_the_original(tmp_path):
    plain, _, _, plain_reference = fine_tuned(tmp_path / "plain", steps=8)
    guarded, _, _, reference = fine_tuned(tmp_path / "lwf", ["lwf"], steps=8, lwf_alpha=20.0)
    new_data = keyword_dataset(24, keyword=3, seed=9)  # the new task's inputs, not seen in training
    assert reference_kl(guarded, reference, new_data) < 0.5 * reference_kl(
        plain, plain_reference, new_data
    )
    logged = [e["guard_lwf"] for e in guarded.state.log_history if "loss" in e]
    assert len(logged) == 4 and all(value >= 0 for value in logged) and logged[-1] > 0
    # the reference head is kept as it was
    start_head = reference_of(TINY_MODELS["bert"]().requires_grad_(False))
    assert not any(
        p.requires_grad for n, p in reference.model.named_parameters() if n in reference.head
    )
    del start_head


@pytest.fixture(scope="module")
def task_a_model(tmp_path_factory):
    """The tiny model trained on task A (keyword 7), so that its head means something."""
    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    args = quiet_training_args(tmp_path_factory.mktemp("a"), strategy="full", max_steps=40,
                               per_device_train_batch_size=16, learning_rate=5e-3)  # fmt: skip
    TransferTrainer.build(model, args, train_dataset=keyword_dataset(96, keyword=7, seed=5)).train()
    return model


def reference_loss(trainer, reference):
    """The reference task's loss on its validation rows, its head on the trained backbone."""
    from hftl.reference import ReferenceHead

    head = ReferenceHead(reference, trainer.model, "test")
    batch = default_data_collator([reference.eval[i] for i in range(len(reference.eval))])
    trainer.model.eval()
    with torch.no_grad():
        logits = head.logits(trainer.model, batch)
    return float(torch.nn.functional.cross_entropy(logits, batch["labels"]))


def test_replay_steps_hold_reference_rows_at_the_ratio_and_keep_the_reference_task(
    tmp_path, task_a_model
):
    plain, _, _, plain_reference = fine_tuned(
        tmp_path / "plain", steps=12, model=copy.deepcopy(task_a_model)
    )
    guarded, _, _, reference = fine_tuned(tmp_path / "replay", ["replay"], steps=12,
                                          model=copy.deepcopy(task_a_model), replay_ratio=1.0)  # fmt: skip
    (guard,) = guarded.guards
    assert len(guard.drawn) == 8  # 1.0 x batches of 8
    assert guard.rows_for(3, 8) == guard.rows_for(3, 8) != guard.rows_for(4, 8)
    other_rank = copy.copy(guard)
    other_rank.rank = 1
    assert other_rank.rows_for(3, 8) != guard.rows_for(3, 8)
    assert len(guard.rows_for(0, 1)) == 1 and len(guard.rows_for(0, 100)) == 32  # at most all
    # task A's loss on its validation rows, under its own head: replay keeps more of it
    assert reference_loss(guarded, reference) < reference_loss(plain, plain_reference)
    logged = [e["guard_replay"] for e in guarded.state.log_history if "loss" in e]
    assert len(logged) == 6 and all(value > 0 for value in logged)


@pytest.mark.parametrize("guard", ["lwf", "replay"])
def test_lwf_and_replay_need_the_reference_task(tmp_path, guard):
    args = quiet_training_args(tmp_path, strategy="full", max_steps=1, guards=[guard])
    with pytest.raises(ConfigError, match=rf"guards \[{guard}\] needs the reference"):
        TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    with pytest.raises(ValueError, match=rf"guards \[{guard}\] with strategy lora"):
        quiet_training_args(tmp_path, strategy="lora", guards=[guard])
