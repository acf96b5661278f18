"""Whisper's encoder as a classifier (``WhisperForAudioClassification``): a speech family (its
head averages the encoder's frames after a projector, as the wav2vec2 family's does) whose
sinusoidal position embeddings are fixed, not learned: no strategy trains them. The encoder reads
a fixed window (30 s of log-mel frames, 50 positions a second) however short the clip; the window
can be shortened to its first positions (the audio task's ``--encoder_window_seconds``), which the
saved config keeps."""

import logging

import torch
from torch import nn
from transformers import PretrainedConfig

from hftl.families.speech import Speech

logger = logging.getLogger(__name__)

POSITIONS_PER_SECOND = 50  # 100 log-mel frames per second, halved by the second convolution


class Whisper(Speech):
    """The speech family's split, LoRA targets and weighted-layer-sum rule, with Whisper's own
    fixed positions and input window."""

    name = "whisper"
    model_types = ("whisper",)
    fixed_tensors = (r"(^|\.)encoder\.embed_positions\.",)

    def input_window(self, config):
        return config.max_source_positions / POSITIONS_PER_SECOND

    def set_input_window(self, model_or_config, seconds):
        positions = int(seconds * POSITIONS_PER_SECOND)
        if isinstance(model_or_config, PretrainedConfig):
            model_or_config.max_source_positions = positions
            return
        model = model_or_config
        encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
        old = encoder.embed_positions
        new = nn.Embedding(
            positions, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype
        )
        with torch.no_grad():
            new.weight.copy_(old.weight[:positions])
        new.weight.requires_grad_(old.weight.requires_grad)
        encoder.embed_positions = new
        encoder.max_source_positions = positions
        model.config.max_source_positions = positions
        logger.info(
            "Whisper encoder window: %g s (%d positions, the first of the checkpoint's)",
            seconds, positions,
        )  # fmt: skip
