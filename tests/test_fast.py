"""Speed defaults change the layout of the computation, never its result."""

import pytest
import torch

from hftl import TransferTrainer
from hftl.fast import wants_channels_last
from hftl.testing import TINY_MODELS, colour_dataset, quiet_training_args


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("timm-resnet", True), ("resnet", True), ("vit", False), ("timm-vit", False), ("bert", False)],
)
def test_channels_last_is_on_by_default_for_batch_norm_cnns_only(kind, expected):
    model = TINY_MODELS[kind]()
    assert wants_channels_last(model, None) is expected
    assert wants_channels_last(model, not expected) is (not expected)  # an explicit setting wins


def train_resnet(output_dir, **overrides):
    torch.manual_seed(0)
    model = TINY_MODELS["resnet"]()
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            kwargs["pixel_values"].is_contiguous(memory_format=torch.channels_last)
        ),
        with_kwargs=True,
    )
    args = quiet_training_args(
        output_dir, strategy="full", num_train_epochs=1, per_device_train_batch_size=8,
        learning_rate=1e-3, **overrides,
    )  # fmt: skip
    trainer = TransferTrainer(
        model,
        args,
        train_dataset=colour_dataset(32, seed=0),
        eval_dataset=colour_dataset(8, seed=1),
    )
    trainer.train()
    return trainer, seen


def test_channels_last_training_matches_the_default_layout_and_saves_a_normal_model(tmp_path):
    from transformers import AutoModelForImageClassification

    fast, fast_inputs = train_resnet(tmp_path / "fast")
    plain, plain_inputs = train_resnet(tmp_path / "plain", channels_last=False)
    assert fast.channels_last and not plain.channels_last
    assert fast_inputs and all(fast_inputs)  # every training batch arrived channels-last
    assert not any(plain_inputs)
    convs = [m.weight for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    torch.manual_seed(0)
    initial = dict(TINY_MODELS["resnet"]().named_parameters())
    plain_params = dict(plain.model.named_parameters())
    changed = 0
    for name, param in fast.model.named_parameters():  # same training, another memory layout
        assert torch.allclose(param, plain_params[name], atol=1e-4), name
        changed += not torch.allclose(param, initial[name], atol=1e-4)
    assert changed > len(plain_params) // 2  # it did train
    fast.save_model(str(tmp_path / "saved"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "saved").eval()
    images = colour_dataset(4, seed=2)[:]["pixel_values"]
    fast.model.eval()
    with torch.no_grad():
        expected = fast.model(pixel_values=images.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(loaded(pixel_values=images).logits, expected.logits, atol=1e-5)
