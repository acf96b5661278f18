"""Tiny random models built from configs, offline: for tests, examples and smoke runs.

Every builder returns a real ``AutoModelFor...``-style classification model with random weights,
small enough to train on a CPU in seconds. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

TEXT_VOCAB = 64


def load_script(path, name: str | None = None):
    """Import a Python file outside any package (a recipe, a script) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_bert(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=TEXT_VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def tiny_pooled_bert(num_labels: int = 2, layers: int = 2, pooling: str = "mean") -> nn.Module:
    """hftl's pooled text head (:mod:`hftl.tasks.pooled_text`) on a tiny BERT encoder."""
    from hftl.tasks.pooled_text import PooledTextClassifier, PooledTextConfig

    encoder = tiny_bert(num_labels, layers).config
    config = PooledTextConfig(
        encoder_config=encoder.to_dict(), pooling=pooling, num_labels=num_labels
    )
    return PooledTextClassifier(config)


def tiny_roberta(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=TEXT_VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=70,
        num_labels=num_labels,
    )
    return RobertaForSequenceClassification(config)


def tiny_distilbert(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=TEXT_VOCAB,
        dim=32,
        n_layers=layers,
        n_heads=2,
        hidden_dim=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return DistilBertForSequenceClassification(config)


def tiny_vit(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=num_labels,
    )
    return ViTForImageClassification(config)


def tiny_deit(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import DeiTConfig, DeiTForImageClassification

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=num_labels,
    )
    return DeiTForImageClassification(config)


def tiny_swin(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1] * layers,
        num_heads=[1, 2, 4, 8][:layers],
        window_size=4,
        num_labels=num_labels,
    )
    return SwinForImageClassification(config)


def tiny_resnet(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32][:layers],
        depths=[1, 2, 1, 1][:layers],
        layer_type="bottleneck",
        num_labels=num_labels,
    )
    return ResNetForImageClassification(config)


def tiny_timm_resnet(num_labels: int = 3) -> nn.Module:
    """timm ``resnet18`` (4 stages, BatchNorm) inside transformers' TimmWrapper."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(architecture="resnet18", num_labels=num_labels)
    return TimmWrapperForImageClassification(config)


def tiny_timm_vit(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(
        architecture="vit_tiny_patch16_224",
        num_labels=num_labels,
        model_args={
            "img_size": 32,
            "patch_size": 8,
            "depth": layers,
            "embed_dim": 32,
            "num_heads": 2,
        },
    )
    return TimmWrapperForImageClassification(config)


# Tiny audio models read 16 kHz audio: wav2vec2 the waveform, Whisper 16 log-mel bins of a 1 s window.
AUDIO_RATE = 16000
TINY_MEL_BINS = 16
TINY_WINDOW_SECONDS = 1


def tiny_wav2vec2(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        feat_extract_norm="layer",  # wav2vec2-large style: every conv layer normalised
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        mask_time_length=2,
        num_labels=num_labels,
    )
    return Wav2Vec2ForSequenceClassification(config)


def tiny_whisper(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import WhisperConfig, WhisperForAudioClassification

    config = WhisperConfig(
        d_model=32,
        encoder_layers=layers,
        encoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=37,
        num_mel_bins=TINY_MEL_BINS,
        max_source_positions=TINY_WINDOW_SECONDS * 50,
        max_target_positions=16,
        vocab_size=TEXT_VOCAB,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=2,
        classifier_proj_size=16,
        num_labels=num_labels,
    )
    return WhisperForAudioClassification(config)


def tiny_ast(num_labels: int = 3, layers: int = 2) -> nn.Module:
    """Audio Spectrogram Transformer on 16 log-mel bins x 32 frames: two 16x16 patches."""
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        patch_size=16,
        num_mel_bins=TINY_MEL_BINS,
        max_length=32,
        frequency_stride=16,
        time_stride=16,
        num_labels=num_labels,
    )
    return ASTForAudioClassification(config)


def tiny_feature_extractor(kind: str):
    """The feature extractor of the tiny audio model ``kind``."""
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if kind == "ast":
        return ASTFeatureExtractor(num_mel_bins=TINY_MEL_BINS, max_length=32)
    if kind == "whisper":
        return WhisperFeatureExtractor(
            feature_size=TINY_MEL_BINS, sampling_rate=AUDIO_RATE, chunk_length=TINY_WINDOW_SECONDS
        )
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=AUDIO_RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    )  # fmt: skip


TONES_HZ = (300.0, 900.0, 2500.0)


def tone_waves(num_examples: int, *, seed: int = 0, seconds: float = 0.1):
    """(waveforms, labels): noisy sine tones at 16 kHz whose class is their pitch."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(TONES_HZ), (num_examples,), generator=generator)
    t = torch.arange(int(AUDIO_RATE * seconds)) / AUDIO_RATE
    phases = torch.rand(num_examples, 1, generator=generator) * 6.28
    pitch = torch.tensor(TONES_HZ)[labels][:, None]
    waves = 0.5 * torch.sin(2 * torch.pi * pitch * t + phases)
    waves += 0.05 * torch.randn(waves.shape, generator=generator)
    return waves.numpy().astype("float32"), labels.tolist()


def tiny_audio_batch(kind: str, batch_size: int, generator: torch.Generator) -> dict:
    """Model inputs for the tiny audio model ``kind`` (random audio)."""
    waves = torch.randn(batch_size, AUDIO_RATE // 10, generator=generator).numpy()
    features = tiny_feature_extractor(kind)(list(waves), sampling_rate=AUDIO_RATE,
                                            return_tensors="pt")  # fmt: skip
    return {k: v for k, v in features.items() if k != "attention_mask"}


def tone_dataset(num_examples: int, *, seed: int = 0, kind: str = "wav2vec2"):
    """Tones whose class is their pitch, in the input format of the tiny audio model ``kind``."""
    from datasets import Dataset

    waves, labels = tone_waves(num_examples, seed=seed)
    extractor = tiny_feature_extractor(kind)
    name = extractor.model_input_names[0]
    features = extractor(list(waves), sampling_rate=AUDIO_RATE, return_tensors="np")[name]
    return Dataset.from_dict({name: np.asarray(features), "labels": labels}).with_format("torch")


TINY_MODELS: dict[str, Callable[..., nn.Module]] = {
    "bert": tiny_bert,
    "bert-mean": tiny_pooled_bert,
    "roberta": tiny_roberta,
    "distilbert": tiny_distilbert,
    "vit": tiny_vit,
    "deit": tiny_deit,
    "swin": tiny_swin,
    "resnet": tiny_resnet,
    "timm-resnet": tiny_timm_resnet,
    "timm-vit": tiny_timm_vit,
    "wav2vec2": tiny_wav2vec2,
    "whisper": tiny_whisper,
    "ast": tiny_ast,
}

# The task each tiny model belongs to (its registered name in hftl.tasks): what its inputs are.
TINY_TASKS: dict[str, str] = {
    **dict.fromkeys(("bert", "bert-mean", "roberta", "distilbert"), "text-classification"),
    **dict.fromkeys(("vit", "deit", "swin", "resnet", "timm-resnet", "timm-vit"),
                    "image-classification"),
    **dict.fromkeys(("wav2vec2", "whisper", "ast"), "audio-classification"),
}  # fmt: skip


def dummy_inputs(kind: str, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random inputs the tiny model called ``kind`` accepts."""
    generator = torch.Generator().manual_seed(seed)
    return TOY_INPUTS[TINY_TASKS[kind]][0](kind, batch_size, generator)


def toy_dataset(kind: str, num_examples: int, seed: int = 0):
    """A learnable ``datasets.Dataset`` in the input format of the tiny model ``kind``: token ids
    with a keyword, coloured images or pitched tones, by its task (:data:`TOY_INPUTS`)."""
    return TOY_INPUTS[TINY_TASKS[kind]][1](kind, num_examples, seed)


def _token_batch(kind: str, batch_size: int, generator: torch.Generator) -> dict:
    ids = torch.randint(3, TEXT_VOCAB, (batch_size, 12), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _pixel_batch(kind: str, batch_size: int, generator: torch.Generator) -> dict:
    return {"pixel_values": torch.randn(batch_size, 3, 32, 32, generator=generator)}


def keyword_dataset(num_examples: int, *, keyword: int = 7, seed: int = 0, length: int = 12):
    """Token-id sequences labelled 1 when they contain ``keyword`` (about half of them)."""
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(8, TEXT_VOCAB, (num_examples, length), generator=generator)
    labels = torch.randint(0, 2, (num_examples,), generator=generator)
    positions = torch.randint(1, length, (num_examples,), generator=generator)
    ids[labels == 1, positions[labels == 1]] = keyword
    return Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": torch.ones_like(ids).tolist(),
            "labels": labels.tolist(),
        }
    ).with_format("torch")


def colour_dataset(num_examples: int, *, num_labels: int = 3, seed: int = 0, size: int = 32):
    """Noisy 32x32 images whose class is the colour channel that is brightest."""
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_labels, (num_examples,), generator=generator)
    images = torch.randn(num_examples, 3, size, size, generator=generator) * 0.5
    images[torch.arange(num_examples), labels % 3] += 1.0
    return Dataset.from_dict(
        {"pixel_values": images.numpy(), "labels": labels.tolist()}
    ).with_format("torch")


# task -> (a random batch, a learnable dataset) for its tiny models: (kind, size, seed / generator)
TOY_INPUTS: dict[str, tuple[Callable, Callable]] = {
    "text-classification": (_token_batch, lambda kind, n, seed: keyword_dataset(n, seed=seed)),
    "image-classification": (_pixel_batch, lambda kind, n, seed: colour_dataset(n, seed=seed)),
    "audio-classification": (
        tiny_audio_batch,
        lambda kind, n, seed: tone_dataset(n, seed=seed, kind=kind),
    ),
}


def quiet_training_args(output_dir: str, **overrides):
    """``TransferTrainingArguments`` for short offline runs: CPU, no checkpoints, no reporting,
    no progress bars, seed 0. ``overrides`` set anything else (strategy, learning_rate, ...)."""
    from hftl.config import TransferTrainingArguments

    defaults = dict(
        output_dir=str(output_dir),
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    return TransferTrainingArguments(**{**defaults, **overrides})


# --------------------------------------------------------------------------------------------
# Tiny checkpoints on disk (model + tokenizer / image processor) and toy data as real files,
# for running the recipes end to end offline.
# --------------------------------------------------------------------------------------------

_FILLER = ["the", "a", "this", "that", "movie", "film", "story", "plot", "acting", "cast", "was",
           "is", "felt", "seemed", "really", "quite", "very", "and", "but", "with", "of", "it"]  # fmt: skip
SENTIMENT_WORDS = {
    "negative": ["bad", "awful", "terrible"],
    "positive": ["good", "great", "wonderful"],
    "neutral": ["fine", "okay", "average"],
}
TOY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *_FILLER,
    *sum(SENTIMENT_WORDS.values(), []),
]


def save_tiny_text_checkpoint(path, kind: str = "bert", num_labels: int = 2, seed: int = 0):
    """A tiny random text classifier and a matching WordPiece tokenizer, saved like a Hub model.
    The weights depend on ``seed`` only (the global RNG is left as it was)."""
    from transformers import BertTokenizer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TINY_MODELS[kind](num_labels=num_labels)
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(TOY_VOCAB)})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_image_checkpoint(path, kind: str = "vit", num_labels: int = 2, seed: int = 0):
    """A tiny random image classifier for 32x32 inputs and its image processor, saved to ``path``.
    The weights depend on ``seed`` only (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _save_tiny_image_checkpoint(path, kind, num_labels)


def _save_tiny_image_checkpoint(path, kind: str, num_labels: int):
    from transformers import (
        ConvNextImageProcessor,
        TimmWrapperConfig,
        TimmWrapperForImageClassification,
        ViTImageProcessor,
    )

    if kind == "timm-resnet":
        import timm

        pretrained_cfg = dict(timm.create_model("resnet18", pretrained=False).pretrained_cfg)
        pretrained_cfg.update(
            input_size=(3, 32, 32), crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
        )
        config = TimmWrapperConfig(
            architecture="resnet18", pretrained_cfg=pretrained_cfg, num_labels=num_labels
        )
        TimmWrapperForImageClassification(config).save_pretrained(
            path
        )  # processor = pretrained_cfg
        return path
    model = TINY_MODELS[kind](num_labels=num_labels)
    if kind == "resnet":
        processor = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)
    else:
        processor = ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_tiny_audio_checkpoint(path, kind: str = "wav2vec2", num_labels: int = 2, seed: int = 0):
    """A tiny random audio classifier and its feature extractor (16 kHz), saved to ``path``.
    The weights depend on ``seed`` only (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TINY_MODELS[kind](num_labels=num_labels)
    model.save_pretrained(path)
    tiny_feature_extractor(kind).save_pretrained(path)
    return path


def write_toy_audio_folder(root, per_class: int, classes=("low", "mid", "high"), seed: int = 0):
    """An audio folder (one sub-folder per class) of noisy tones whose class is their pitch, as
    real folders hold them: WAV, FLAC and Ogg files, mono and stereo, at 16, 22.05 and 44.1 kHz,
    0.2 to 1.5 s long."""
    from pathlib import Path

    import soundfile

    rng = np.random.default_rng(seed)
    formats = [(".wav", 16000, 1), (".flac", 22050, 2), (".ogg", 44100, 1), (".wav", 44100, 2)]
    for label, name in enumerate(classes):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix, rate, channels = formats[i % len(formats)]
            seconds = rng.uniform(0.2, 1.5)
            t = np.arange(int(rate * seconds)) / rate
            wave = 0.5 * np.sin(2 * np.pi * TONES_HZ[label % len(TONES_HZ)] * t + rng.uniform(0, 6))
            wave = wave + rng.normal(0, 0.05, wave.shape)
            data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
            soundfile.write(folder / f"{i}{suffix}", data.astype("float32"), rate)
    return root


def toy_reviews(num_examples: int, labels=("negative", "positive"), seed: int = 0) -> list[dict]:
    """Short 'reviews' whose label is given away by one sentiment word among filler words."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(num_examples):
        label = labels[i % len(labels)]
        words = rng.sample(_FILLER, rng.randint(3, 10))
        words.insert(rng.randint(0, len(words)), rng.choice(SENTIMENT_WORDS[label]))
        rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    return rows


def write_toy_reviews_csv(path, num_examples: int, labels=("negative", "positive"), seed: int = 0):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(toy_reviews(num_examples, labels, seed))
    return path


TOY_COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def write_toy_image_folder(
    root, per_class: int, classes=("red", "green", "blue"), seed: int = 0, odd_modes: bool = True,
    size: tuple[int, int] | None = None,
):  # fmt: skip
    """An image folder (one sub-folder per class) of noisy 40x48 images whose class is their colour.

    With ``odd_modes`` some images are saved as L (grey), RGBA, P (palette) and CMYK JPEG, as
    real folders contain them. ``size=(width, height)``: RGB JPEGs of that size instead (photo-sized
    files for benchmarks, e.g. ``scripts/cold_run.py``).
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA", "P", "CMYK"] if odd_modes else ["RGB"]
    width, height = size or (48, 40)
    for name in classes:
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(
                np.array(TOY_COLOURS[name]) + rng.normal(0, 25, (height, width, 3)), 0, 255
            ).astype("uint8")
            image = Image.fromarray(pixels)
            mode = modes[i % len(modes)]
            if size is not None:
                image.save(folder / f"{i}.jpg", quality=90)
            elif mode == "CMYK":
                image.convert("CMYK").save(folder / f"{i}.jpg")
            else:
                image.convert(mode).save(folder / f"{i}.png")
    return root
