"""Tasks, strategies and guards behind validated registries; the bugs the reshaping fixed; no
global side effects."""

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from hftl import GUARDS, STRATEGIES, TASKS, TransferTrainer, TransferTrainingArguments
from hftl.cli import main as hftl_main
from hftl.guards.base import Guard
from hftl.layers import LayerMapError, build_layer_map
from hftl.registry import Registry
from hftl.testing import TINY_MODELS, colour_dataset, keyword_dataset, quiet_training_args


@dataclass
class _Clashing:
    learning_rate: float = 1.0


@dataclass
class _Own:
    hftl_test_only_option: int = 0


class _Entry:
    def __init__(self, name, arguments=None):
        self.name, self.arguments = name, arguments


def test_registry_refuses_bad_names_duplicates_and_clashing_fields():
    registry = Registry("widget")
    registry.register(_Entry("good_one", _Own))
    with pytest.raises(ValueError, match="lowercase"):
        registry.register(_Entry("Bad Name"))
    with pytest.raises(ValueError, match="'good_one' is registered already"):
        registry.register(_Entry("good_one"))
    with pytest.raises(ValueError, match="'learning_rate' is a TrainingArguments field"):
        registry.register(_Entry("clashing", _Clashing))
    with pytest.raises(ValueError, match="'hftl_test_only_option' belongs to widget 'good_one'"):
        Registry("gadget").register(_Entry("other", _Own))
    with pytest.raises(ValueError, match=r"unknown widget 'god_one' \(did you mean 'good_one'\?\)"):
        registry.get("god_one")
    assert registry.names() == ("good_one",)


# A value other than the default for every option a strategy or a guard registers (as on the
# command line, and as parsed), and the flags it needs beside it; a new option adds its own here.
NON_DEFAULTS = {
    "feature_cache": ("false", False),
    "feature_cache_views": ("3", 3),
    "feature_cache_dir": ("memory", "memory"),
    "linear_probe": ("true", True),
    "num_trainable_layers": ("2", 2),
    "unfreeze_every": ("3", 3),
    "unfreeze_unit": ("step", "step"),
    "lora_r": ("4", 4),
    "lora_alpha": ("32", 32),
    "lora_dropout": ("0.2", 0.2),
    "lora_target_modules": ("query key", ["query", "key"]),
    "merge_lora": ("false", False),
    "early_stopping_patience": ("2", 2),
    "l2sp_alpha": ("0.5", 0.5),
    "l2sp_beta": ("0.2", 0.2),
    "ewc_lambda": ("100", 100.0),
    "ewc_fisher": ("true", "true"),
    "ewc_fisher_samples": ("64", 64),
    "ewc_gamma": ("0.5", 0.5),
    "lwf_alpha": ("2", 2.0),
    "lwf_temperature": ("4", 4.0),
    "replay_ratio": ("0.5", 0.5),
    "wise_ft_alpha": ("0.75", 0.75),
    "wise_ft_sweep": ("0 0.5 1", [0.0, 0.5, 1.0]),
}
COMPANIONS = {
    "linear_probe": ["--strategy", "feature_extraction"],
    "early_stopping_patience": ["--load_best_model_at_end", "true", "--eval_strategy", "epoch",
                                "--save_strategy", "epoch"],
}  # fmt: skip


def test_every_registered_option_is_a_flag_a_yaml_key_and_comes_back_from_run_config(tmp_path):
    """Each strategy's and guard's option reaches TransferTrainingArguments from the command line
    and survives run_config.yaml (what `--config` reruns): the argument classes are really mixed
    in, parsed with their types, and written back."""
    from hftl.config import parse_config
    from hftl.outputs import write_resolved_config

    registered = {f.name for r in (STRATEGIES, GUARDS) for a in r.argument_classes()
                  for f in dataclasses.fields(a)}  # fmt: skip
    assert registered == set(NON_DEFAULTS)  # a new option: add a value for it above
    for name, (flag, expected) in NON_DEFAULTS.items():
        argv = [
            "--output_dir",
            str(tmp_path),
            f"--{name}",
            *flag.split(),
            *COMPANIONS.get(name, []),
        ]
        (args,) = parse_config([TransferTrainingArguments], argv)
        assert getattr(args, name) == expected, name
        default = next(f.default for f in dataclasses.fields(TransferTrainingArguments)
                       if f.name == name)  # fmt: skip
        assert expected != default, name
        config = tmp_path / f"{name}.yaml"
        write_resolved_config(config, args)
        (again,) = parse_config([TransferTrainingArguments], ["--config", str(config)])
        assert getattr(again, name) == expected, name
    assert STRATEGIES.names() == (
        "feature_extraction",
        "partial",
        "full",
        "gradual",
        "lora",
        "lp_ft",
    )


def test_every_task_has_its_card_template_and_builds_its_tiny_models():
    from importlib import resources

    from hftl.testing import TINY_TASKS, TOY_INPUTS, dummy_inputs

    templates = resources.files("hftl.model_cards")
    for task in TASKS:
        assert templates.joinpath(task.card_template).is_file(), task.name
        assert task.name in TOY_INPUTS and task.name in TINY_TASKS.values(), task.name
    assert sorted(TINY_TASKS) == sorted(TINY_MODELS)  # each tiny model belongs to one task
    for kind, task in TINY_TASKS.items():
        model = TINY_MODELS[kind](num_labels=3)
        assert TASKS.get(task).builds(model.config.model_type), kind
        assert model(**dummy_inputs(kind, batch_size=2)).logits.shape == (2, 3), kind


def test_hftl_groups_with_lora_shows_the_adapter_groups(tmp_path, capsys):
    from hftl.testing import save_tiny_image_checkpoint

    save_tiny_image_checkpoint(tmp_path / "vit", "vit")
    model = str(tmp_path / "vit")
    assert (
        hftl_main(["groups", "--model_name_or_path", model, "--strategy", "lora", "--lora_r", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "PeftModel" in out and "strategy=lora parameter groups" in out
    head_row = [line for line in out.splitlines() if " head " in line][-1]
    assert int(head_row.split()[2]) == 2  # classifier weight + bias (modules_to_save copy)


def test_hftl_groups_resolves_an_hftl_asset(tmp_path, monkeypatch, capsys):
    from hftl.assets import Asset, catalog
    from hftl.testing import save_tiny_image_checkpoint

    cache = tmp_path / "cache"
    save_tiny_image_checkpoint(cache / "toy-vit", "vit")
    asset = Asset(name="toy-vit", requirement="toy-vit==1", sha256="a" * 64, license="x",
                         source="y", convert=None, description="z")  # fmt: skip
    (cache / "toy-vit" / "asset.json").write_text(
        json.dumps({"sha256": asset.sha256, "requirement": asset.requirement})
    )
    monkeypatch.setattr(catalog, "ASSETS", {"toy-vit": asset})
    monkeypatch.setenv("HFTL_CACHE", str(cache))
    assert hftl_main(["groups", "--model_name_or_path", "hftl:toy-vit", "--strategy", "full"]) == 0
    assert "ViTForImageClassification: L = 2 blocks" in capsys.readouterr().out


def test_a_model_whose_base_model_is_itself_gets_the_modules_beside_its_blocks_as_head():
    from transformers import CLIPConfig, CLIPForImageClassification

    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config={**small, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1},
                        vision_config={**small, "image_size": 32, "patch_size": 8},
                        projection_dim=16, num_labels=3)  # fmt: skip
    model = CLIPForImageClassification(config)  # its base_model is the model itself
    layer_map = build_layer_map(model)
    assert set(layer_map.names_at(layer_map.head_depth)) == {"classifier.weight", "classifier.bias"}
    assert layer_map.num_blocks == 2


def test_a_model_without_a_head_hftl_can_see_is_refused(tmp_path):
    from torch import nn

    class Everything(nn.Module):  # blocks and classifier in one module: nothing beside them
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.classifier = nn.Linear(4, 3)

    class Opaque(nn.Module):
        base_model_prefix = "model"  # no such attribute: its base_model is itself

        def __init__(self):
            super().__init__()
            self.body = Everything()

    args = quiet_training_args(tmp_path, strategy="feature_extraction", max_steps=1)
    with pytest.raises(LayerMapError, match="found no head in Opaque"):
        TransferTrainer(Opaque(), args, train_dataset=colour_dataset(4))


def test_timm_model_with_two_heads_trains_both_under_feature_extraction(tmp_path):
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    from hftl.families import split_for

    config = TimmWrapperConfig(architecture="deit_tiny_distilled_patch16_224", num_labels=3,
                               model_args={"img_size": 32, "patch_size": 8, "depth": 2,
                                           "embed_dim": 32, "num_heads": 2})  # fmt: skip
    torch.manual_seed(0)
    model = TimmWrapperForImageClassification(config)
    layer_map = build_layer_map(model)
    assert set(layer_map.names_at(layer_map.head_depth)) == {
        "timm_model.head.weight", "timm_model.head.bias",
        "timm_model.head_dist.weight", "timm_model.head_dist.bias",
    }  # fmt: skip
    assert split_for(model) is None  # two heads on two tokens: no single feature vector
    args = quiet_training_args(tmp_path, strategy="feature_extraction", max_steps=2,
                               per_device_train_batch_size=4, learning_rate=1e-2)  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=colour_dataset(8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(layer_map.names_at(layer_map.head_depth))
    assert trainer.feature_cache == {"used": False}


class _ConstantPenalty(Guard):
    name = "constant_penalty"

    def penalty(self, model, inputs, outputs):
        return torch.tensor(2.5 * sum(1 for p in model.parameters() if p.requires_grad))


@pytest.mark.parametrize("cache", [False, True])
def test_guard_penalties_join_the_loss_on_cached_and_uncached_paths(tmp_path, cache):
    torch.manual_seed(0)
    args = quiet_training_args(tmp_path, strategy="feature_extraction", feature_cache=cache,
                               feature_cache_dir="memory", max_steps=1)  # fmt: skip
    trainer = TransferTrainer.build(TINY_MODELS["bert"](), args, train_dataset=keyword_dataset(8))
    trainer.guards = [_ConstantPenalty()]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainable = sum(1 for p in trainer.model.parameters() if p.requires_grad)
    trainer.model.eval()
    task_loss = trainer.compute_loss(trainer.model, dict(batch))
    trainer.model.train()
    with torch.no_grad():
        for module in trainer.model.modules():  # same forward in train mode: no dropout
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        training_loss = trainer.compute_loss(trainer.model, dict(batch))
    assert training_loss.item() == pytest.approx(task_loss.item() + 2.5 * trainable, rel=1e-5)
    assert (trainer.feature_cache or {}).get("used", False) is cache


def test_importing_hftl_changes_no_global_state():
    code = (
        "import logging, transformers, matplotlib\n"
        "verbosity, backend = transformers.logging.get_verbosity(), matplotlib.get_backend()\n"
        "import hftl, hftl.cards, hftl.outputs, hftl.run, hftl.cli\n"
        "logger = logging.getLogger('hftl')\n"
        "assert all(isinstance(h, logging.NullHandler) for h in logger.handlers), logger.handlers\n"
        "assert logger.propagate and logger.level == logging.NOTSET\n"
        "assert transformers.logging.get_verbosity() == verbosity\n"
        "assert matplotlib.get_backend() == backend\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_log_restores_what_it_changed(tmp_path):
    import logging

    import transformers

    from hftl.logs import RunLog

    hf_logger = logging.getLogger("transformers")
    levels = [h.level for h in hf_logger.handlers]
    verbosity = transformers.logging.get_verbosity()
    hftl_logger = logging.getLogger("hftl")
    handlers, level = list(hftl_logger.handlers), hftl_logger.level
    log = RunLog(tmp_path)
    logging.getLogger("hftl.test").info("into the file")
    log.stop()
    log.stop()  # twice is harmless
    assert "into the file" in (tmp_path / "train.log").read_text()
    assert [h.level for h in hf_logger.handlers] == levels
    assert transformers.logging.get_verbosity() == verbosity
    assert hftl_logger.handlers == handlers and hftl_logger.level == level
