"""Every tiny model x every registered strategy: two real steps through TransferTrainer, then
which parameters moved and the learning rate of every optimizer group.

Like PEFT's custom-model tests: a new strategy (hftl/strategies/) or a new tiny model
(``hftl.testing.TINY_MODELS``) is covered here without writing a test for it.
"""

import pytest
import torch
import torch.nn.functional as F

from hftl import STRATEGIES, TransferTrainer
from hftl.errors import ConfigError
from hftl.families import split_for
from hftl.feature_cache import unwrap
from hftl.testing import TINY_MODELS, quiet_training_args, toy_dataset

LR, DECAY, HEAD = 1e-2, 0.5, 4.0
FLAGS = {  # what each strategy needs beyond the shared settings
    "partial": {"num_trainable_layers": 1},
    "gradual": {"unfreeze_every": 1, "unfreeze_unit": "step"},  # step 1 also trains block L
    "lora": {"lora_r": 2},
}
# The lowest depth that moves in two steps, given L blocks (None: adapters, not depths). A new
# strategy adds its line here.
LOWEST_MOVED = {
    "feature_extraction": lambda L: L + 1,
    "partial": lambda L: L,
    "full": lambda L: 0,
    "gradual": lambda L: L,
    "lora": None,
    "lp_ft": lambda L: 0,
}


def two_steps(kind, strategy, tmp_path):
    torch.manual_seed(0)
    model = TINY_MODELS[kind]()
    args = quiet_training_args(
        tmp_path, strategy=strategy, max_steps=2, per_device_train_batch_size=4,
        learning_rate=LR, layer_decay=DECAY, head_lr_multiplier=HEAD, lr_scheduler_type="constant",
        weight_decay=0.0, feature_cache_dir="memory", **FLAGS.get(strategy, {}),
    )  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=toy_dataset(kind, 8, seed=0))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    return trainer, moved


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_two_steps_move_what_the_strategy_trains_at_the_layer_rates(kind, strategy, tmp_path):
    if STRATEGIES.get(strategy).probes_head and not _takes_probe(kind):
        with pytest.raises(ConfigError, match=f"strategy {strategy}: .* not one linear layer"):
            two_steps(kind, strategy, tmp_path)
        return
    trainer, moved = two_steps(kind, strategy, tmp_path)
    layer_map = trainer.layer_map
    L, head = layer_map.num_blocks, layer_map.head_depth
    depth = layer_map.depths
    assert trainer.state.global_step == 2
    assert any(depth[n] == head for n in moved), "the head did not train"

    assert strategy in LOWEST_MOVED, f"add what strategy {strategy!r} trains to LOWEST_MOVED"
    lowest = LOWEST_MOVED[strategy] and LOWEST_MOVED[strategy](L)
    if lowest is None:
        base = {n for n in moved if "lora_" not in n and depth[n] != head}
        assert not base, f"pretrained weights moved under LoRA: {sorted(base)[:3]}"
        assert any("lora_" in n for n in moved)
    else:
        assert {depth[n] for n in moved} <= set(range(lowest, head + 1))
        # every depth that trains moved (gradual: block L joined at step 1)
        assert {depth[n] for n in moved} == set(range(lowest, head + 1)) - _empty(layer_map)

    for group in trainer.optimizer.param_groups:
        expected = LR * HEAD if group["depth"] == head else LR * DECAY ** (head - group["depth"])
        assert group["lr"] == pytest.approx(expected), group["depth"]
        assert {depth[n] for n in group["param_names"]} == {group["depth"]}
    in_optimizer = {n for g in trainer.optimizer.param_groups for n in g["param_names"]}
    assert moved <= in_optimizer


def _takes_probe(kind):
    split = split_for(TINY_MODELS[kind]())
    return split is not None and split.takes_linear_probe


def _empty(layer_map):
    return {d for d in range(layer_map.head_depth + 1) if not layer_map.names_at(d)}


def test_an_unknown_strategy_is_refused_with_the_closest_name(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown strategy 'parital' \(did you mean 'partial'\?\)"
    ):
        quiet_training_args(tmp_path, strategy="parital")


# ---------------------------------------------------------------------------------------------
# Every label shape (hftl/shapes/) x every strategy, on one tiny model per task
# ---------------------------------------------------------------------------------------------

SHAPE_KINDS = ("bert-mean", "vit", "wav2vec2")  # text, image, audio; each takes a linear probe


def shaped(shape_name, kind, num_examples):
    """A tiny model with a head for the shape, its toy data with labels of that shape, and the
    run's LabelSpec (labels derived from the toy class: the class, a multi-hot pair, or a
    number)."""
    from hftl.shapes import SHAPES, LabelArguments

    data = toy_dataset(kind, num_examples, seed=0)
    if shape_name == "single_label":
        names = ["first", "second", "third"][: TINY_MODELS[kind]().config.num_labels]
    elif shape_name == "multi_label":
        data = data.map(
            lambda row: {"labels": [float(row["labels"] == 0), float(row["labels"] != 1)]}
        )
        names = ["first", "not-second"]
    else:
        data = data.map(lambda row: {"labels": [10.0 + 5.0 * row["labels"]]})
        names = ["score"]
    shape = SHAPES.get(shape_name)
    spec = shape.spec(
        data,
        "labels",
        names,
        LabelArguments(class_weights="auto" if shape.takes_class_weights else None),
    )
    model = TINY_MODELS[kind](num_labels=len(names))
    spec.configure(model.config)
    return model, data, spec


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("shape_name", ["single_label", "multi_label", "regression"])
@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_every_shape_trains_under_every_strategy_with_its_own_loss(
    kind, shape_name, strategy, tmp_path
):
    torch.manual_seed(0)
    model, data, spec = shaped(shape_name, kind, 8)
    args = quiet_training_args(
        tmp_path, strategy=strategy, max_steps=2, per_device_train_batch_size=4,
        learning_rate=LR, lr_scheduler_type="constant", feature_cache_dir="memory",
        linear_probe=strategy == "feature_extraction", **FLAGS.get(strategy, {}),
    )  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=data, label_spec=spec)
    head = trainer.layer_map.head_depth
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert any(trainer.layer_map.depths[n] == head for n in moved), "the head did not train"
    probe = (trainer.feature_cache or {}).get("linear_probe")
    if strategy in ("lp_ft", "feature_extraction"):  # the shape's own probe wrote the head
        assert probe["cv_metric"] == {"single_label": "accuracy", "multi_label": "micro-F1",
                                      "regression": "MSE (standardised targets)"}[shape_name]  # fmt: skip
    # the loss that trained is the shape's: weighted cross-entropy, BCE per label with
    # pos_weight, or MSE on standardised targets
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    targets = batch["labels"].float()
    if shape_name == "single_label":  # cross-entropy with the inverse-frequency weights
        expected = F.cross_entropy(
            logits, batch["labels"].long(), weight=torch.tensor(spec.class_weights)
        )
    elif shape_name == "multi_label":
        expected = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=torch.tensor(spec.class_weights)
        )
    else:
        expected = F.mse_loss(logits, (targets - spec.mean[0]) / spec.std[0])
        # before saving, the targets' scale goes into the output layer: the model then predicts
        # what the standardised model did, in the data's units
        model = unwrap(trainer.model)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        spec.shape.finish_model(spec, model)
        with torch.no_grad():
            after = trainer.model(**inputs).logits
        assert torch.allclose(after, logits * spec.std[0] + spec.mean[0], atol=1e-4)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    if shape_name == "regression":  # the scale is in the output layer now (checked above)
        spec.scale_in_model = True
    saved_model_in_pipeline_predicts_as_hftl(kind, unwrap(trainer.model), spec, tmp_path / "saved")


def raw_inputs(kind):
    """Two raw inputs for ``kind``'s pipeline and its processor (saved with the model)."""
    import numpy as np
    from PIL import Image
    from transformers import BertTokenizer, ViTImageProcessor

    from hftl.testing import TOY_VOCAB, tiny_feature_extractor

    rng = np.random.default_rng(0)
    if kind == "bert-mean":
        return ["a great film", "the plot was awful"], BertTokenizer(
            vocab={word: i for i, word in enumerate(TOY_VOCAB)}
        )
    if kind == "vit":
        images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in "ab"]
        return images, ViTImageProcessor(size={"height": 32, "width": 32})
    waves = [rng.normal(0, 0.3, 8000).astype(np.float32) for _ in "ab"]  # equal length: no padding
    return waves, tiny_feature_extractor(kind)


def saved_model_in_pipeline_predicts_as_hftl(kind, model, spec, directory):
    """Save the trained model as a run does (LoRA merged, the shape in its config) and load it
    with plain pipeline(): its scores are hftl's reading of the model's logits."""
    from transformers import pipeline

    from hftl.testing import TINY_TASKS

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    spec.configure(model.config)
    raw, processor = raw_inputs(kind)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    model.eval()
    with torch.no_grad():
        if kind == "bert-mean":
            inputs = processor(raw, return_tensors="pt", padding=True)
        elif kind == "vit":
            inputs = processor(images=raw, return_tensors="pt")
        else:
            inputs = processor(raw, sampling_rate=processor.sampling_rate, return_tensors="pt")
        ours = spec.outputs(model(**inputs).logits.numpy())
    task = TINY_TASKS[kind]
    run = pipeline(task, model=str(directory), top_k=None, trust_remote_code=True)
    results = [run(x if kind != "wav2vec2" else {"raw": x, "sampling_rate": 16000}) for x in raw]
    results = [row[0] if isinstance(row[0], list) else row for row in results]  # text: [[...]]
    theirs = [[{r["label"]: r["score"] for r in row}[n] for n in spec.names] for row in results]
    assert torch.allclose(torch.tensor(theirs), torch.tensor(ours, dtype=torch.float32), atol=1e-4)
