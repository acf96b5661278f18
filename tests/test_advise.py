"""hftl advise: the recommendation rules at their boundaries, the ridge probe against an
independent computation, the source head's LEEP against the full model, and the command end to
end (scores, the written config run by the recipe as is, the feature cache shared with a run)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from hftl import advise as adv
from hftl.advise import DataProfile, ModelScore, layer_decay_for, recommend, rules, scoring
from hftl.shapes import SHAPES, LabelArguments
from hftl.strategies import STRATEGIES
from hftl.strategies.base import ADVISED_HEAD_LR_MULTIPLIER
from hftl.strategies.full import LOWEST_BLOCK_SHARE
from hftl.tasks import task_of
from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder
from hftl.transferability import probe_accuracy, stratified_folds

IMAGE = task_of("image-classification")


def profile(per_class: int, classes: int = 10, *, smallest: int | None = None, scored=None):
    examples = per_class * classes
    return DataProfile(
        examples=examples,
        classes=classes,
        per_class_min=per_class if smallest is None else smallest,
        per_class_max=per_class,
        scored=examples if scored is None else scored,
        smallest_class="7",
    )


def score(name="m", logme=0.5, probe=0.5, *, lora=True, blocks=8, scratch=False) -> ModelScore:
    return ModelScore(model=name, logme=logme, probe_accuracy=probe, probe_folds=5,
                      feature_dim=16, parameters=1_000_000, num_blocks=blocks, takes_lora=lora,
                      from_scratch=scratch)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The rules, at their boundaries
# --------------------------------------------------------------------------------------------


def test_features_that_fit_and_small_data_give_feature_extraction_with_a_probe():
    fit, few = rules.FEATURES_FIT, rules.FEW_PER_CLASS
    rec = recommend(profile(few - 1), [score(probe=fit)], IMAGE)
    assert rec.strategy == "feature_extraction"
    assert rec.settings["linear_probe"] is True
    assert rec.settings["learning_rate"] == pytest.approx(IMAGE.learning_rate * 50)
    # just below the fit threshold: the backbone has to move
    assert recommend(profile(few - 1), [score(probe=fit - 1e-6)], IMAGE).strategy == "lora"
    # enough data: everything trains, however well the features fit
    assert recommend(profile(few), [score(probe=1.0)], IMAGE).strategy == "full"


def test_small_data_gets_lora_or_partial_where_lora_finds_no_layer():
    rec = recommend(profile(20), [score(probe=0.6, lora=True)], IMAGE)
    assert rec.strategy == "lora"
    assert rec.settings["learning_rate"] == pytest.approx(
        IMAGE.learning_rate * IMAGE.lora_lr_multiplier
    )
    rec = recommend(profile(20), [score(probe=0.6, lora=False, blocks=7)], IMAGE)
    assert rec.strategy == "partial"
    assert rec.settings["num_trainable_layers"] == 2  # ceil(7 / 4): the top quarter
    assert rec.settings["head_lr_multiplier"] == ADVISED_HEAD_LR_MULTIPLIER
    one_block = recommend(profile(20), [score(probe=0.6, lora=False, blocks=1)], IMAGE)
    assert one_block.settings["num_trainable_layers"] == 1
    # no probe (a class with one example): not "fitting", so not feature extraction
    assert recommend(profile(20), [score(probe=None)], IMAGE).strategy == "lora"


def test_full_fine_tuning_gets_a_layer_decay_whose_lowest_block_trains_at_a_tenth():
    rec = recommend(profile(rules.FEW_PER_CLASS), [score(blocks=12)], IMAGE)
    decay = rec.settings["layer_decay"]
    assert rec.strategy == "full" and decay == layer_decay_for(12)
    assert decay ** (12 - 1) == pytest.approx(LOWEST_BLOCK_SHARE, rel=0.1)
    assert layer_decay_for(2) == pytest.approx(0.1)
    assert layer_decay_for(1) == 1.0  # one block: nothing to decay over


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategys_advised_values_are_options_a_run_takes(name, tmp_path):
    """What advise would write for any strategy parses as a run's options (with the strategy's
    own checks), and says why its learning rate is what it is."""
    from hftl.config import TransferTrainingArguments

    strategy = STRATEGIES.get(name)
    settings, reasons = strategy.advised(IMAGE, 12)
    assert "learning_rate" in reasons
    args = TransferTrainingArguments(str(tmp_path), strategy=name, use_cpu=True, **settings)
    assert {k: getattr(args, k) for k in settings} == settings


def test_the_model_is_the_highest_logme_and_never_a_random_init_control():
    scores = [score("a", logme=0.2), score("b", logme=0.4), score("c", logme=0.9, scratch=True)]
    rec = recommend(profile(50), scores, IMAGE)
    assert rec.model == "b"
    assert "next a at 0.200" in rec.reasons["model"]


@pytest.mark.parametrize(("examples", "epochs"), [(10, 30), (320, 30), (3200, 3), (40_000, 3)])
def test_epochs_aim_at_the_target_steps_within_bounds(examples, epochs):
    assert rules.epochs_for(examples, 32) == epochs
    middle = rules.epochs_for(1600, 32)  # 50 steps an epoch: 6 epochs = 300 steps
    assert middle * 50 == rules.TARGET_STEPS


def test_notes_on_imbalance_and_sampling_at_their_thresholds():
    balanced = recommend(profile(100, smallest=20), [score()], IMAGE)  # balance 0.2
    assert not balanced.notes
    skewed = recommend(profile(100, smallest=19), [score()], IMAGE)
    assert len(skewed.notes) == 1 and "macro-F1" in skewed.notes[0] and "'7'" in skewed.notes[0]
    sampled = recommend(profile(100, scored=500), [score()], IMAGE)
    assert "500 of 1000" in sampled.notes[0]


# --------------------------------------------------------------------------------------------
# The ridge probe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(60, 8), (24, 40)])  # the Gram and the kernel form
def test_ridge_probe_equals_sklearn_ridge_on_the_same_folds(n, d):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, d)) + 0.8 * np.eye(3)[labels] @ rng.normal(size=(3, d))
    accuracy, folds = probe_accuracy(features, labels, folds=4, seed=1)
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    fold_of = stratified_folds(labels, 4, seed=1)
    best = 0.0
    for strength in adv_strengths():
        correct = 0
        for fold in range(folds):
            held = fold_of == fold
            centred = x[~held] - x[~held].mean(0)
            spectrum = np.clip(np.linalg.eigvalsh(centred.T @ centred), 0, None)
            if n - held.sum() < d:  # the kernel form's eigenvalues are those of Xc Xc^T
                spectrum = np.clip(np.linalg.eigvalsh(centred @ centred.T), 0, None)
            ridge = Ridge(alpha=strength * spectrum.mean()).fit(x[~held], np.eye(3)[labels[~held]])
            correct += (ridge.predict(x[held]).argmax(1) == labels[held]).sum()
        best = max(best, correct / n)
    assert accuracy == pytest.approx(best)


def adv_strengths():
    from hftl.transferability import RIDGE_STRENGTHS

    return RIDGE_STRENGTHS


def test_ridge_probe_separates_signal_from_noise_and_needs_two_per_class():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    signal = np.eye(4)[labels] * 3 + rng.normal(size=(200, 4))
    noise = rng.normal(size=(200, 4))
    assert probe_accuracy(np.hstack([signal, noise]), labels)[0] > 0.9
    assert probe_accuracy(noise, labels)[0] < 0.45
    assert probe_accuracy(noise[:5], np.array([0, 0, 1, 1, 2])) is None  # class 2: one example


# --------------------------------------------------------------------------------------------
# The command, end to end on a tiny model
# --------------------------------------------------------------------------------------------


@pytest.fixture
def colours(tmp_path):
    write_toy_image_folder(tmp_path / "train", per_class=8, seed=0, odd_modes=False)
    write_toy_image_folder(tmp_path / "validation", per_class=3, seed=1, odd_modes=False)
    a = save_tiny_image_checkpoint(tmp_path / "vit-a", "vit", num_labels=2, seed=0)
    b = save_tiny_image_checkpoint(tmp_path / "vit-b", "vit", num_labels=2, seed=1)
    return tmp_path, str(a), str(b)


def test_advise_scores_each_model_writes_a_config_the_recipe_runs_and_shares_the_cache(colours):
    from hftl.cli import main
    from hftl.run import run_task

    root, a, b = colours
    cache = root / "features"
    flags = ["--train_dir", str(root / "train"), "--validation_dir", str(root / "validation")]
    assert main(["advise", *flags, "--models", a, b, "--feature_cache_dir", str(cache),
                 "--write_config", str(root / "advised.yaml"), "--json", str(root / "advice.json"),
                 "--output_dir", str(root / "run"), "--seed", "3", "--disable_tqdm", "true"]) == 0  # fmt: skip
    advice = json.loads((root / "advice.json").read_text())
    scores = {s["model"]: s for s in advice["models"]}
    assert set(scores) == {a, b}
    assert advice["data"]["examples"] == 24 and advice["data"]["classes"] == 3
    best = max(scores.values(), key=lambda s: s["logme"])
    assert advice["recommendation"]["model"] == best["model"]
    for s in scores.values():
        assert math.isfinite(s["logme"]) and s["feature_dim"] == 32  # tiny ViT's hidden size
        assert s["leep"] is not None and s["source_classes"] == 2  # the checkpoint's 2-class head
        assert 0 <= s["probe_accuracy"] <= 1

    config = yaml.safe_load((root / "advised.yaml").read_text())
    assert config["model_name_or_path"] == best["model"]
    assert config["train_dir"] == str(root / "train") and config["seed"] == 3
    assert config["strategy"] == advice["recommendation"]["strategy"]
    assert "augmentation" not in config  # the task's default for the advised strategy stays
    # the recipe runs it as is (one epoch, to be quick) and trains the advised strategy
    report, trainer = run_task("image-classification",
                               ["--config", str(root / "advised.yaml"), "--num_train_epochs", "1"],
                               prog="test")  # fmt: skip
    assert (root / "run" / "config.json").exists()
    assert trainer.args.strategy == config["strategy"]
    assert trainer.args.learning_rate == pytest.approx(config["learning_rate"])

    # a feature_extraction run of the same model, data and seed reads advise's features
    run_task("image-classification", [*flags, "--model_name_or_path", best["model"], "--strategy",
             "feature_extraction", "--num_train_epochs", "1", "--seed", "3", "--feature_cache_dir",
             str(cache), "--output_dir", str(root / "fe"), "--report_to", "none",
             "--save_strategy", "no"], prog="test")  # fmt: skip
    info = json.loads((root / "fe" / "run_info.json").read_text())
    cache_record = info["training"]["feature_cache"]
    assert cache_record["reused"] == 1, cache_record  # the training set: advise extracted it


def test_source_head_scores_match_the_full_source_model(colours):
    """LEEP from the source head on advise's features equals LEEP from the checkpoint run in
    full on the same images (so the head and the features belong together)."""
    from transformers import AutoModelForImageClassification

    from hftl.advise import AdviseArguments
    from hftl.config import ModelArguments
    from hftl.data import DataArguments
    from hftl.models import load_processor
    from hftl.run import load_classification_data
    from hftl.tasks.image_classification import open_image, to_rgb
    from hftl.transferability import leep

    root, a, _ = colours
    data_args = DataArguments(
        train_dir=str(root / "train"), validation_dir=str(root / "validation")
    )
    task_args = IMAGE.arguments()
    advice = adv.advise(IMAGE, data_args, task_args,
                        AdviseArguments(models=[a], feature_cache_dir="memory", disable_tqdm=True))  # fmt: skip
    raw, columns, _ = load_classification_data(data_args, IMAGE, task_args, seed=42)
    processor = load_processor(ModelArguments(a), IMAGE)
    images = [to_rgb(open_image(value)) for value in raw["train"][columns.inputs]]
    source = AutoModelForImageClassification.from_pretrained(a).eval()
    with torch.no_grad():
        logits = source(**processor(images, return_tensors="pt")).logits
    expected = leep(torch.softmax(logits, -1).numpy(), np.asarray(raw["train"][columns.label]))
    assert advice.scores[0].leep == pytest.approx(expected, abs=1e-4)


def test_no_source_scores_for_a_checkpoint_without_its_own_head(tmp_path):
    from transformers import ViTConfig, ViTModel

    from hftl.config import ModelArguments
    from hftl.models import load_source_classifier

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=37)  # fmt: skip
    ViTModel(config).save_pretrained(tmp_path / "bare")
    assert load_source_classifier(ModelArguments(str(tmp_path / "bare")), IMAGE) is None
    head = save_tiny_image_checkpoint(tmp_path / "head", "vit", num_labels=4)
    assert load_source_classifier(ModelArguments(str(head)), IMAGE).config.num_labels == 4
    scratch = ModelArguments(str(head), from_scratch=True)
    assert load_source_classifier(scratch, IMAGE) is None


def test_advise_without_task_or_models_is_one_clear_line(capsys):
    from hftl.cli import main

    assert main(["advise", "--train_dir", "x"]) != 0
    err = capsys.readouterr().err
    assert "give --task" in err and "Traceback" not in err


def test_a_default_model_that_cannot_load_names_the_way_out(colours, monkeypatch, capsys):
    from hftl.cli import main

    root, _, _ = colours
    monkeypatch.setattr(type(IMAGE), "advise_models", ("./no-such-model",))
    assert main(["advise", "--task", "image-classification", "--train_dir", str(root / "train"),
                 "--disable_tqdm", "true"]) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "./no-such-model" in err and "default list" in err and "--models" in err


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_advise_scores_text_and_audio_checkpoints(tmp_path, modality):
    from hftl.advise import AdviseArguments
    from hftl.data import DataArguments
    from hftl.testing import (
        save_tiny_audio_checkpoint,
        save_tiny_text_checkpoint,
        write_toy_audio_folder,
        write_toy_reviews_csv,
    )

    if modality == "text":
        task = task_of("text-classification")
        model = save_tiny_text_checkpoint(tmp_path / "bert", "bert", num_labels=2)
        data = DataArguments(train_file=str(write_toy_reviews_csv(tmp_path / "r.csv", 40)))
    else:
        task = task_of("audio-classification")
        model = save_tiny_audio_checkpoint(tmp_path / "w2v", "wav2vec2", num_labels=2)
        data = DataArguments(
            train_dir=str(write_toy_audio_folder(tmp_path / "clips", 10)),
            validation_split_percentage=30,
        )
    advice = adv.advise(task, data, task.arguments(),
                        AdviseArguments(models=[str(model)], feature_cache_dir="memory",
                                        disable_tqdm=True))  # fmt: skip
    (score,) = advice.scores
    assert math.isfinite(score.logme) and score.probe_accuracy is not None
    assert score.source_classes == 2  # both checkpoints carry a 2-class head of their own
    assert advice.recommendation.model == str(model)
    assert advice.recommendation.settings["learning_rate"] > 0


def test_large_data_is_scored_on_a_stratified_sample():
    from datasets import ClassLabel, Dataset, Features, Value

    labels = [0] * 900 + [1] * 100
    data = Dataset.from_dict(
        {"x": list(range(1000)), "label": labels},
        features=Features({"x": Value("int32"), "label": ClassLabel(names=["a", "b"])}),
    )
    sample = scoring.stratified_sample(data, "label", 200, seed=0)
    assert len(sample) == 200 and sum(sample["label"]) == 20  # 10% of class b, as in the data
    assert scoring.stratified_sample(data, "label", 1000, seed=0) is data
    spec = SHAPES.get("single_label").spec(data, "label", ["a", "b"], LabelArguments())
    prof = scoring.profile_data(data, spec, scored=len(sample))
    assert (prof.examples, prof.per_class_min, prof.smallest_class) == (1000, 100, "b")
    assert prof.balance == pytest.approx(100 / 900)
    # numbers have no classes: a seeded random sample; each target counts every example
    numbers = data.map(lambda row: {"y": [float(row["x"])]})
    sample = scoring.stratified_sample(numbers, "y", 200, seed=0, stratify=False)
    assert (
        len(sample) == 200
        and sample["x"] == scoring.stratified_sample(numbers, "y", 200, seed=0, stratify=False)["x"]
    )
    spec = SHAPES.get("regression").spec(numbers, "y", ["y"], LabelArguments())
    prof = scoring.profile_data(numbers, spec, scored=200)
    assert (prof.examples, prof.classes, prof.per_class_min, prof.balance) == (1000, 1, 1000, 1.0)
