"""Speech encoders with a convolutional feature encoder (wav2vec2, HuBERT, WavLM, data2vec-audio,
UniSpeech, SEW, wav2vec2-conformer / -bert): the feature encoder is the stem (depth 0) however many
parameters it holds (:meth:`~hftl.families.base.Family.stem_modules`), and the head averages the
encoder's frames after a linear projector, then classifies."""

from contextlib import contextmanager

import torch
from torch import nn

from hftl.families.base import Family, Split


@contextmanager
def _replaced_by_identity(model: nn.Module, *names: str):
    saved = {name: getattr(model, name) for name in names}
    try:
        for name in names:
            setattr(model, name, nn.Identity())
        yield
    finally:
        for name, module in saved.items():
            setattr(model, name, module)


def mean_of_frames(model, batch):
    """Speech classifiers average the frames after a linear projector; the average commutes with
    it, so the model's own forward with projector and classifier replaced by identities gives the
    average of the encoder's frames (over the real ones, where there is an attention mask)."""
    keys = ("input_values", "input_features", "attention_mask")
    with _replaced_by_identity(model, "projector", "classifier"):
        return model(**{k: batch[k] for k in keys if k in batch}).logits


def write_through_projector(model, weight, bias):
    """classifier(projector(f)) = weight @ f + bias, exactly: the projector's first C rows are
    the probe's weights and its other rows zero, the classifier passes those C through. The zero
    rows and columns get no gradient, so the head stays this linear map's rank C."""
    classes, size = weight.shape
    projector, classifier = model.projector, model.classifier
    if classes > projector.out_features:
        raise ValueError(
            f"linear_probe: {classes} classes do not fit the {projector.out_features}-wide "
            "projector (config.classifier_proj_size); train without --linear_probe"
        )
    projector.weight.zero_()
    projector.bias.zero_()
    projector.weight[:classes] = weight.to(projector.weight)
    classifier.weight.zero_()
    classifier.weight[:, :classes] = torch.eye(classes, dtype=classifier.weight.dtype)
    classifier.bias.copy_(bias.to(classifier.bias))


# mean of the encoder's frames -> projector -> classifier (both linear)
FRAMES = Split(
    "frames",
    mean_of_frames,
    lambda m, f: m.classifier(m.projector(f)),
    write_linear=write_through_projector,
)


class Speech(Family):
    name = "speech"
    model_types = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat",
                   "sew", "sew-d", "wav2vec2-conformer", "wav2vec2-bert")  # fmt: skip
    split = FRAMES
    lora_targets = ("q_proj", "v_proj")

    def split_for(self, model):
        if getattr(model.config, "use_weighted_layer_sum", False):
            return None  # the head weighs every layer's output, not one feature vector
        return self.split
