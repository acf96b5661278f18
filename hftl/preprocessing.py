"""Preprocessing that matches the pretrained model.

Images: evaluation uses the model's own image processor, which is what ``pipeline()`` applies at
inference. Training augmentation (random resized crop + horizontal flip) is built from the same
numbers: input size, interpolation, mean and std; for timm models it is timm's own training
transform from the checkpoint's ``pretrained_cfg``. Every image is converted to RGB first
(L, RGBA, P and CMYK images occur in real folders).

Text: the model's tokenizer with truncation to ``max_seq_length``; padding happens per batch
(``DataCollatorWithPadding``), so a batch is as long as its longest example, and the sentiment
recipe groups examples of similar length into batches (``train_sampling_strategy:
group_by_length``). ``pad_to_max_length`` pads everything to ``max_seq_length`` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image as PILImage
from torchvision import transforms as T

_INTERPOLATION = {
    0: T.InterpolationMode.NEAREST,
    1: T.InterpolationMode.LANCZOS,
    2: T.InterpolationMode.BILINEAR,
    3: T.InterpolationMode.BICUBIC,
    4: T.InterpolationMode.BOX,
    5: T.InterpolationMode.HAMMING,
}


def to_rgb(image) -> PILImage.Image:
    """A PIL RGB image from a PIL image of any mode (or a numpy array)."""
    if not isinstance(image, PILImage.Image):
        image = PILImage.fromarray(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = PILImage.new("RGBA", image.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def train_image_transform(processor) -> Callable[[PILImage.Image], torch.Tensor]:
    """Random resized crop + flip at the model's input size, then its normalisation."""
    if hasattr(processor, "train_transforms"):  # TimmWrapperImageProcessor: timm's own recipe
        return processor.train_transforms
    height, width = _input_size(processor)
    steps = [
        T.RandomResizedCrop((height, width), interpolation=_interpolation(processor)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
    ]
    if (
        getattr(processor, "do_normalize", True)
        and getattr(processor, "image_mean", None) is not None
    ):
        steps.append(T.Normalize(mean=processor.image_mean, std=processor.image_std))
    return T.Compose(steps)


def image_batch_transform(processor, image_column: str, label_column: str, train: bool) -> Callable:
    """A ``Dataset.set_transform`` function: images -> ``pixel_values``, labels -> ``labels``."""
    augment = train_image_transform(processor) if train else None

    def transform(batch: dict) -> dict:
        images = [_decode(value) for value in batch[image_column]]
        if augment is not None:
            pixels = [augment(image) for image in images]
        else:
            pixels = list(processor(images, return_tensors="pt")["pixel_values"])
        return {"pixel_values": pixels, "labels": batch[label_column]}

    # What the feature cache keys on (a closure's repr changes every run).
    settings = (
        processor.to_json_string() if hasattr(processor, "to_json_string") else repr(processor)
    )
    transform.hftl_description = (
        f"image_batch_transform({image_column}, {label_column}, train={train}, {settings})"
    )
    return transform


def _decode(value) -> PILImage.Image:
    from hftl.data import open_image
    from hftl.errors import ConfigError

    try:
        image = open_image(value)
        image.load()
    except OSError as error:
        where = value.get("path") if isinstance(value, dict) else None
        raise ConfigError(
            f"image {where or '(in memory)'} cannot be decoded ({error}); remove or replace it"
        ) from None
    return to_rgb(image)


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([e["labels"] for e in examples]),
    }


def tokenize_dataset(
    dataset,
    tokenizer,
    text_column: str,
    label_column: str,
    max_length: int,
    pad_to_max_length: bool = False,
):
    """Tokenize (truncating; padding only with ``pad_to_max_length``) and keep only model inputs
    and ``labels``."""
    padding = "max_length" if pad_to_max_length else False

    def tokenize(batch):
        encoded = tokenizer(
            batch[text_column], truncation=True, max_length=max_length, padding=padding
        )
        encoded["labels"] = batch[label_column]
        return encoded

    return dataset.map(
        tokenize, batched=True, remove_columns=dataset["train"].column_names, desc="Tokenizing"
    )


def _input_size(processor) -> tuple[int, int]:
    for attribute in ("crop_size", "size"):
        size = getattr(processor, attribute, None)
        if attribute == "crop_size" and not getattr(processor, "do_center_crop", False):
            continue
        if not size:
            continue
        size = dict(size)
        if "height" in size and "width" in size:
            return size["height"], size["width"]
        if "shortest_edge" in size:
            return size["shortest_edge"], size["shortest_edge"]
    raise ValueError(f"cannot read the input size from {type(processor).__name__}")


def _interpolation(processor) -> T.InterpolationMode:
    resample = getattr(processor, "resample", None)
    return _INTERPOLATION.get(
        int(resample) if resample is not None else 2, T.InterpolationMode.BILINEAR
    )
