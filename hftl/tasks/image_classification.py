"""Image classification: any ``AutoModelForImageClassification`` checkpoint or timm model.

Preprocessing matches the pretrained model. Evaluation uses the model's own image processor,
which is what ``pipeline()`` applies at inference. Training augmentation (random resized crop +
horizontal flip) is built from the same numbers: input size, interpolation, mean and std; for
timm models it is timm's own training transform from the checkpoint's ``pretrained_cfg``. Every
image is converted to RGB first (L, RGBA, P and CMYK images occur in real folders), and images
are decoded by hftl, so a file that fails is named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from torchvision import transforms as T
from transformers import AutoImageProcessor, AutoModelForImageClassification
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

from hftl.data import check_file_exists
from hftl.errors import ConfigError, first_line
from hftl.tasks.base import Prepared, Task, rows_of

logger = logging.getLogger(__name__)


@dataclass
class ImageClassificationArguments:
    """The image task's own data options."""

    image_column_name: str | None = field(
        default=None, metadata={"help": "Image column (auto-detected)."}
    )
    augmentation: bool | None = field(
        default=None,
        metadata={
            "help": "Random resized crop + flip of the training images (timm models: timm's own "
            "training transform). Default: on where the backbone trains, off with a frozen one "
            "(feature_extraction computes each image's features once; with --augmentation true "
            "it caches --feature_cache_views augmented views instead)."
        },
    )


class ImageClassification(Task):
    name = "image-classification"
    summary = "images -> one of N labels (ViT, ResNet, EfficientNet, ConvNeXt, timm, ...)"
    arguments = ImageClassificationArguments
    auto_model = AutoModelForImageClassification
    model_types = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    input_name = "image"
    processor_name = "image processor"
    folder_builder = "imagefolder"
    example_input = "path/or/url/to/image.jpg"
    processor_class = "AutoImageProcessor"
    onnx_snippet = ("from PIL import Image\n", '[Image.open("image.jpg").convert("RGB")]')
    advise_models = (
        "timm/efficientnet_b0.ra_in1k",
        "timm/convnext_tiny.fb_in22k_ft_in1k",
        "google/vit-base-patch16-224",
        "microsoft/resnet-50",
    )
    learning_rate = 1e-3
    lora_lr_multiplier = 5.0  # 20x (2e-2) diverged on EfficientNet-Lite0 (transfer study)

    @property
    def folder_extensions(self) -> frozenset[str]:
        from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

        return frozenset(e.lower() for e in ImageFolder.EXTENSIONS)

    def load_processor(self, path, **kwargs):
        return AutoImageProcessor.from_pretrained(path, **kwargs)

    def find_input_column(self, features, columns, task_args):
        from hftl.data import pick_column

        return pick_column(
            "image",
            task_args.image_column_name,
            columns,
            typed=[c for c in columns if isinstance(features[c], Image)],
            by_name=[c for c in ("image", "img", "pixel_values") if c in columns],
        )

    def check_inputs(self, dataset, column, task_args=None):
        return check_images(dataset, column)

    def batch_inputs(self, processor, task_args):
        transform = image_batch_transform(processor, "input", "labels", train=False)
        return lambda values: collate_images(rows_of(transform({"input": values})))

    def prepare(self, raw, processor, columns, task_args, training_args):
        training_args.remove_unused_columns = False  # the transform needs the raw image column
        augment = task_args.augmentation
        if augment is None:
            augment = task_args.augmentation = not training_args.strategy_object.frozen_backbone
            logger.info(
                "augmentation %s (the default %s)", "on" if augment else "off",
                "where the backbone trains" if augment else "with a frozen backbone",
            )  # fmt: skip
        evaluation = image_batch_transform(processor, columns.inputs, columns.label, train=False)
        return Prepared(
            train=raw["train"].with_transform(
                image_batch_transform(processor, columns.inputs, columns.label, train=augment)
            ),
            eval=raw["validation"].with_transform(evaluation),
            collator=collate_images,
            test=raw["test"].with_transform(evaluation) if "test" in raw else None,
        )


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
        out = {"pixel_values": pixels}
        if label_column in batch:  # inputs alone (hftl predict): no labels
            out["labels"] = batch[label_column]
        return out

    # What the feature cache keys on (a closure's repr changes every run).
    settings = (
        processor.to_json_string() if hasattr(processor, "to_json_string") else repr(processor)
    )
    transform.hftl_description = (
        f"image_batch_transform({image_column}, {label_column}, train={train}, {settings})"
    )
    transform.hftl_random = train  # random crops and flips: hftl.feature_cache caches views

    return transform


def _decode(value) -> PILImage.Image:
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
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples])
    return batch


def check_images(dataset: DatasetDict, image_column: str) -> DatasetDict:
    """Stop decoding images in ``datasets`` (hftl decodes them, naming any file that fails) and
    open every image's header now, so an unreadable file stops the run before training starts."""
    dataset = dataset.cast_column(image_column, Image(decode=False))
    for split, data in dataset.items():
        for index, value in enumerate(data[image_column]):
            check_file_exists(value, split, index, "image")
            try:
                with open_image(value) as image:
                    image.size  # noqa: B018 - reading the header is the check
            except (OSError, PILImage.DecompressionBombError, ValueError) as error:
                where = value.get("path") or f"data row {index + 1}"
                raise ConfigError(
                    f"split '{split}': image {where} cannot be read ({first_line(error)}); "
                    "remove or replace it"
                ) from None
    return dataset


def open_image(value):
    """A PIL image from a ``datasets`` undecoded image value ({'path', 'bytes'}) or a PIL image."""
    from io import BytesIO

    if isinstance(value, PILImage.Image):
        return value
    if value.get("bytes"):
        return PILImage.open(BytesIO(value["bytes"]))
    return PILImage.open(value["path"])


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
