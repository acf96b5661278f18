"""Cached feature extraction: the split reproduces the model, the cache key tracks its inputs,
and training on cached features equals training with the frozen backbone in the loop."""

import json

import numpy as np
import pytest
import torch

from hftl.families import split_for
from hftl.feature_cache import CachedFeatureModel
from hftl.testing import TINY_MODELS, dummy_inputs


@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_head_of_extracted_features_is_the_models_output(kind):
    torch.manual_seed(0)
    model = TINY_MODELS[kind]().eval()
    split = split_for(model)
    assert split is not None, kind
    inputs = dummy_inputs(kind, batch_size=3)
    with torch.no_grad():
        expected = model(**inputs).logits
        features = split.extract(model, inputs)
        assert features.ndim == 2 and features.shape[0] == 3
        assert torch.allclose(split.head(model, features), expected, atol=1e-5)


def train_feature_extraction(output_dir, *, cache: bool, kind="bert", epochs=1, **overrides):
    from hftl import TransferTrainer
    from hftl.testing import colour_dataset, keyword_dataset, quiet_training_args

    torch.manual_seed(0)
    model = TINY_MODELS[kind]()
    data = keyword_dataset if kind in ("bert", "roberta", "distilbert") else colour_dataset
    args = quiet_training_args(
        output_dir, strategy="feature_extraction", feature_cache=cache, num_train_epochs=epochs,
        per_device_train_batch_size=8, learning_rate=5e-3, **overrides,
    )  # fmt: skip
    trainer = TransferTrainer.build(
        model, args, train_dataset=data(48, seed=0), eval_dataset=data(16, seed=1)
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("kind", ["bert", "timm-resnet", "vit"])
def test_cached_and_uncached_training_end_with_the_same_head(tmp_path, kind):
    """Same optimizer, schedule, data order and head dropout: the same head after an epoch."""
    cached = train_feature_extraction(
        tmp_path / "c", cache=True, kind=kind, feature_cache_dir="memory"
    )
    plain = train_feature_extraction(tmp_path / "p", cache=False, kind=kind)
    assert cached.feature_cache["used"] and not plain.feature_cache["used"]
    from hftl.feature_cache import unwrap

    trained_cached = dict(unwrap(cached.model).named_parameters())
    changed = 0
    for name, param in plain.model.named_parameters():
        assert torch.allclose(trained_cached[name], param, atol=1e-5), name
        changed += param.requires_grad
    assert changed  # the head did train
    assert cached.evaluate()["eval_loss"] == pytest.approx(plain.evaluate()["eval_loss"], abs=1e-5)


def test_cache_key_follows_weights_data_and_preprocessing():
    from hftl.feature_cache import cache_key
    from hftl.testing import keyword_dataset

    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    split = split_for(model)
    data, other_data = keyword_dataset(16, seed=0), keyword_dataset(16, seed=1)
    key = cache_key(model, split, data, "tokenizer A", "None")
    assert cache_key(model, split, data, "tokenizer A", "None") == key
    assert cache_key(model, split, other_data, "tokenizer A", "None") != key
    assert cache_key(model, split, data, "tokenizer B", "None") != key
    assert cache_key(model, split, data, "tokenizer A", "torch.bfloat16") != key
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    assert cache_key(model, split, data, "tokenizer A", "None") != key


def test_recipe_reuses_the_cache_and_saves_a_full_model_pipeline_loads(tmp_path, hftl_logs):
    from test_recipes import SENTIMENT_LABELS, run_sentiment
    from transformers import AutoTokenizer, pipeline

    from hftl.feature_cache import unwrap
    from hftl.testing import save_tiny_text_checkpoint, toy_reviews, write_toy_reviews_csv

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    write_toy_reviews_csv(tmp_path / "train.csv", 90, labels=SENTIMENT_LABELS, seed=0)
    write_toy_reviews_csv(tmp_path / "validation.csv", 30, labels=SENTIMENT_LABELS, seed=1)
    flags = ["--strategy", "feature_extraction", "--num_train_epochs", "3",
             "--feature_cache_dir", str(tmp_path / "features")]  # fmt: skip
    first, trainer = run_sentiment(tmp_path, tmp_path / "first", *flags)
    assert sum("computed once" in r.getMessage() for r in hftl_logs.records) == 2  # train, eval
    assert len(list((tmp_path / "features").glob("*.features.npy"))) == 2
    # streamed into the cache batch by batch, then read back memory-mapped: not held in RAM
    assert isinstance(trainer.cached_features.train.views[0], np.memmap)
    assert not list((tmp_path / "features").glob("*.tmp.npy"))
    hftl_logs.clear()
    second, _ = run_sentiment(tmp_path, tmp_path / "second", *flags)
    assert sum("(reused)" in r.getMessage() for r in hftl_logs.records) == 2
    assert second["accuracy"] == first["accuracy"]

    texts = [row["text"] for row in toy_reviews(5, labels=SENTIMENT_LABELS, seed=9)]
    model = unwrap(trainer.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "first")
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    expected = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    classify = pipeline("text-classification", model=str(tmp_path / "first"))
    assert [p["label"] for p in classify(texts)] == expected
    info = json.loads((tmp_path / "first" / "run_info.json").read_text())
    assert info["training"]["feature_cache"]["used"] is True


@pytest.mark.parametrize("num_labels", [2, 3])
def test_linear_probe_is_one_linear_layer_on_raw_features(num_labels):
    import numpy as np

    from hftl.shapes import fit_linear_probe

    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_labels, 120)
    centres = rng.normal(size=(num_labels, 6)) * 3
    scales = np.array([1e-3, 1, 10, 100, 1, 1])  # unstandardised, very different scales
    features = (centres[labels] + rng.normal(size=(120, 6))) * scales + 5
    probe = fit_linear_probe(features, labels, num_labels=num_labels + 1)  # one label never seen
    assert probe["weight"].shape == (num_labels + 1, 6) and probe["C"] > 0
    logits = torch.tensor(features, dtype=torch.float32) @ probe["weight"].T + probe["bias"]
    predicted = logits.argmax(-1).numpy()
    assert (predicted == labels).mean() > 0.9
    assert num_labels not in predicted  # the unseen label


def test_linear_probe_through_the_trainer_writes_the_classifier(tmp_path):
    trainer = train_feature_extraction(tmp_path, cache=True, kind="timm-resnet", linear_probe=True,
                                       feature_cache_dir="memory")  # fmt: skip
    assert trainer.state.global_step == 0 and trainer.feature_cache["linear_probe"]["folds"] >= 2
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] < 1.0  # the colour task, from random-init features
    head = trainer.model.model.timm_model.get_classifier()
    from hftl.testing import colour_dataset

    batch = colour_dataset(16, seed=1)[:]
    with torch.no_grad():
        full = trainer.model.model.eval()(pixel_values=batch["pixel_values"]).logits
    assert head.weight.abs().sum() > 0 and full.argmax(-1).eq(batch["labels"]).float().mean() > 0.6


def test_linear_probe_needs_cached_feature_extraction(tmp_path):
    from hftl.testing import quiet_training_args

    with pytest.raises(ValueError, match="linear_probe needs strategy=feature_extraction"):
        quiet_training_args(tmp_path, strategy="full", linear_probe=True)


def test_the_head_on_features_and_the_models_own_inputs_give_the_same_answer(tmp_path):
    """The trained CachedFeatureModel, called with the model's own inputs (evaluation of a dataset
    that was not cached) and with the features of the same rows, gives the same logits and loss:
    the pass-through keeps every input and the labels, and the head is the trained one."""
    from hftl.testing import keyword_dataset

    trainer = train_feature_extraction(tmp_path, cache=True, feature_cache_dir="memory")
    model = trainer.model.eval()
    batch = keyword_dataset(4, seed=3)[:]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    padded = {  # a padded row: a pass-through that dropped the attention mask would differ
        "input_ids": torch.cat([inputs["input_ids"], torch.zeros(4, 3, dtype=torch.long)], 1),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.zeros(4, 3, dtype=torch.long)], 1),
    }  # fmt: skip
    with torch.no_grad():
        through_inputs = model(**padded, labels=batch["labels"])
        features = model.split.extract(model.model, padded)
        through_features = model(features=features, labels=batch["labels"])
        untrained = CachedFeatureModel(TINY_MODELS["bert"](), model.split).eval()
        fresh = untrained(features=features).logits
    assert torch.allclose(through_inputs.logits, through_features.logits, atol=1e-5)
    assert through_inputs.loss.item() == pytest.approx(through_features.loss.item(), abs=1e-5)
    assert not torch.allclose(fresh, through_features.logits, atol=1e-3)


def test_another_dataset_is_predicted_through_its_features(tmp_path):
    from hftl.feature_cache import FeatureDataset, unwrap
    from hftl.testing import keyword_dataset

    trainer = train_feature_extraction(tmp_path, cache=True, feature_cache_dir="memory")
    test = keyword_dataset(8, seed=4)
    features = trainer.cached_features.features(test)
    batch = test[:]
    assert isinstance(features, FeatureDataset)
    assert features.labels.tolist() == batch["labels"].tolist()
    predicted = trainer.predict(features).predictions
    with torch.no_grad():
        full = (
            unwrap(trainer.model)
            .eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            .logits
        )
    torch.testing.assert_close(torch.as_tensor(predicted), full, atol=1e-5, rtol=1e-5)


def test_a_plain_torch_dataset_is_cached_in_memory(tmp_path):
    from hftl.testing import keyword_dataset

    class Plain(torch.utils.data.Dataset):  # no datasets fingerprint to key a file on
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return self.data[i]

    from hftl import TransferTrainer
    from hftl.testing import quiet_training_args

    args = quiet_training_args(tmp_path, strategy="feature_extraction", num_train_epochs=1,
                               feature_cache_dir=str(tmp_path / "features"))  # fmt: skip
    trainer = TransferTrainer.build(
        TINY_MODELS["bert"](), args, train_dataset=Plain(keyword_dataset(16))
    )
    assert trainer.feature_cache["used"] and len(trainer.train_dataset) == 16
    assert not (tmp_path / "features").exists()


def test_cached_model_keeps_mode_switching_and_grad_clearing_of_a_module():
    from hftl.feature_cache import CachedFeatureModel

    torch.manual_seed(0)
    model = TINY_MODELS["bert"]()
    wrapper = CachedFeatureModel(model, split_for(model))
    assert [id(p) for p in wrapper.parameters()] == [id(p) for p in model.parameters()]
    for mode in (False, True, True, False, True):
        wrapper.train(mode)
        assert model.dropout.training is mode and model.classifier.training is mode
    logits = wrapper(features=torch.randn(4, 32), labels=torch.tensor([0, 1, 0, 1])).loss
    logits.backward()
    assert model.classifier.weight.grad is not None
    wrapper.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_feature_extraction_caches_unaugmented_features_by_default_and_views_when_asked(
    tmp_path, hftl_logs
):
    """No flags: a frozen backbone sees unaugmented images, cached once. --augmentation true:
    one cached random view per epoch (up to --feature_cache_views), seeded, so a rerun reuses
    them."""
    from test_recipes import run_images
    from transformers import TrainerCallback

    from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

    write_toy_image_folder(tmp_path / "train", per_class=6, seed=0)
    write_toy_image_folder(tmp_path / "validation", per_class=3, seed=1)
    save_tiny_image_checkpoint(tmp_path / "vit", "vit", num_labels=2)

    class ViewsRead(TrainerCallback):
        def __init__(self):
            self.views = []

        def on_step_begin(self, args, state, control, train_dataloader=None, **kwargs):
            self.views.append((int(state.epoch or 0), train_dataloader.dataset.view))

    cache = ["--strategy", "feature_extraction", "--feature_cache_dir", str(tmp_path / "cache")]
    _, plain = run_images(tmp_path, "vit", tmp_path / "plain", *cache)
    assert plain.feature_cache["views"] == 1 and len(plain.train_dataset.views) == 1
    assert any("augmentation off" in r.getMessage() for r in hftl_logs.records)

    augmented = [*cache, "--augmentation", "true", "--num_train_epochs", "3",
                 "--feature_cache_views", "5", "--per_device_train_batch_size", "6"]  # fmt: skip
    read = ViewsRead()
    _, first = run_images(tmp_path, "vit", tmp_path / "first", *augmented, callbacks=[read])
    views = first.train_dataset.views
    assert first.feature_cache["views"] == 3 == len(views)  # no more views than epochs
    assert sorted(set(read.views)) == [(0, 0), (1, 1), (2, 2)]  # epoch e read view e
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert not np.allclose(views[a], views[b])  # three different augmentations
    for view in views:  # and none is the unaugmented image
        assert not np.allclose(view, plain.train_dataset.views[0])

    hftl_logs.clear()
    _, second = run_images(tmp_path, "vit", tmp_path / "second", *augmented)
    assert second.feature_cache["reused"] == 4  # three views and the evaluation set
    for a, b in zip(second.train_dataset.views, views, strict=True):
        np.testing.assert_array_equal(a, b)


def test_features_are_extracted_in_the_precision_the_launch_config_trains_in(tmp_path, monkeypatch):
    """``accelerate launch`` with a config's ``mixed_precision: bf16`` leaves ``--bf16`` False but
    trains in bf16: the features are extracted in bf16 too, as with ``--bf16 true``."""

    from hftl.fast import mixed_precision

    def features(name, **overrides):
        trainer = train_feature_extraction(tmp_path / name, cache=True, feature_cache_dir="memory",
                                           **overrides)  # fmt: skip
        return mixed_precision(trainer.args), np.asarray(trainer.train_dataset.features)

    full = features("fp32")
    flag = features("flag", bf16=True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    launched = features("launched")
    assert (full[0], flag[0], launched[0]) == ("no", "bf16", "bf16")
    assert not np.allclose(full[1], flag[1], atol=1e-4)  # bf16 rounding shows
    np.testing.assert_array_equal(launched[1], flag[1])


def test_each_new_dataset_gets_its_own_features_when_the_last_one_is_gone(tmp_path):
    """Datasets made and dropped one after another (often at the same address): each is
    extracted itself, never answered with the features of one that went before."""
    from hftl.testing import keyword_dataset

    trainer = train_feature_extraction(tmp_path, cache=True, feature_cache_dir="memory")
    for seed in range(2, 12):
        test = keyword_dataset(8, seed=seed)
        features = trainer.cached_features.features(test)
        assert features.labels.tolist() == test[:]["labels"].tolist(), seed
        del test, features
