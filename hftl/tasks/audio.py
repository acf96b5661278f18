"""Audio classification: any ``AutoModelForAudioClassification`` checkpoint (wav2vec2, HuBERT,
WavLM, data2vec-audio, AST, Whisper's encoder through ``WhisperForAudioClassification``, ...).

hftl decodes the audio itself, with ``soundfile`` (WAV, FLAC, Ogg/Vorbis/Opus, MP3, AIFF, ... with
no system codec), so a file that fails is named and no FFmpeg is needed. Every clip is down-mixed
to mono and resampled (``soxr``) to the feature extractor's rate, then the checkpoint's own feature
extractor makes the model inputs, as ``pipeline("audio-classification")`` does at inference.
In training a clip longer than ``--max_length_seconds`` is cut to a random window of that length
(as transformers' ``run_audio_classification.py`` does); evaluation reads whole clips.

Whisper's encoder reads a fixed 30 s window, however short the clip: a 0.5 s clip is padded to
60 times its length. ``--encoder_window_seconds N`` shortens the window to N seconds: the encoder
keeps its first 50*N position embeddings and the feature extractor pads to N seconds; the saved
model and feature extractor carry the new window, so ``pipeline()`` uses it without hftl.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import torch
from datasets import Audio, DatasetDict, Value
from torch import nn
from transformers import (
    ASTFeatureExtractor,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    WhisperFeatureExtractor,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES

from hftl.data import check_file_exists, is_text
from hftl.errors import ConfigError, first_line
from hftl.families import family_for_type, family_of
from hftl.layers import KEEP_FROZEN_ATTRIBUTE
from hftl.tasks.base import Prepared, Task, rows_of

logger = logging.getLogger(__name__)

AUDIO_NAMES = ("audio", "file", "path", "audio_path", "filename", "file_name", "speech", "wav")
SECONDS_COLUMN = "hftl_audio_seconds"  # each clip's duration, read once by check_audio


@dataclass
class AudioClassificationArguments:
    """The audio task's own data options (run_audio_classification.py's names and defaults)."""

    audio_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Audio: the audio column, an Audio feature or file paths (auto-detected)."
        },
    )
    max_length_seconds: float = field(
        default=20,
        metadata={
            "help": "Audio: training clips longer than this are cut to a random window of this "
            "length (evaluation reads whole clips)."
        },
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={
            "help": "Audio: keep a speech model's convolutional feature encoder (wav2vec2, HuBERT, "
            "WavLM, ...) frozen under every strategy, as transformers' example does."
        },
    )
    attention_mask: bool = field(
        default=True,
        metadata={
            "help": "Audio: give the model an attention mask over the padding of a batch (models "
            "that take one: wav2vec2 family)."
        },
    )
    encoder_window_seconds: int | None = field(
        default=None,
        metadata={
            "help": "Audio, Whisper only: shorten the encoder's fixed 30 s input window to this "
            "many seconds (its first position embeddings kept): the encoder then runs on "
            "30/N times fewer frames. Clips longer than the window are cut to it."
        },
    )

    def __post_init__(self):
        if not self.max_length_seconds > 0:
            raise ValueError(f"--max_length_seconds {self.max_length_seconds}: must be > 0")
        if self.encoder_window_seconds is not None and not 1 <= self.encoder_window_seconds <= 30:
            raise ValueError(
                f"--encoder_window_seconds {self.encoder_window_seconds}: whole seconds, 1 to 30"
            )


class AudioClassification(Task):
    name = "audio-classification"
    summary = "a sound clip -> one of N labels (wav2vec2, HuBERT, WavLM, AST, Whisper encoder, ...)"
    arguments = AudioClassificationArguments
    auto_model = AutoModelForAudioClassification
    model_types = MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES
    input_name = "audio file"
    processor_name = "feature extractor"
    folder_builder = "audiofolder"
    example_input = "clip.wav"
    processor_class = "AutoFeatureExtractor"
    onnx_snippet = (
        "import soundfile\n",
        '[soundfile.read("clip.wav")[0]], sampling_rate=16000  # mono, at the model\'s rate',
    )
    card_tags = ("audio",)
    advise_models = (
        "facebook/wav2vec2-base",
        "ntu-spml/distilhubert",
        "openai/whisper-tiny",
        "MIT/ast-finetuned-audioset-10-10-0.4593",
    )
    learning_rate = 1e-4
    lora_lr_multiplier = 10.0

    @property
    def folder_extensions(self) -> frozenset[str]:
        """audiofolder's extensions that soundfile decodes (others are left out, with a warning)."""
        import soundfile
        from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

        readable = {f".{name.lower()}" for name in soundfile.available_formats()} | {
            ".ogg", ".opus", ".oga", ".aif", ".aiff", ".wave",
        }  # fmt: skip
        return frozenset(e.lower() for e in AudioFolder.EXTENSIONS) & readable

    def load_processor(self, path, **kwargs):
        return AutoFeatureExtractor.from_pretrained(path, **kwargs)

    def load_model(self, path, config, task_args=None, *, from_scratch=False, **kwargs):
        """The checkpoint's audio classifier; Whisper's window shortened where asked, and the
        convolutional feature encoder kept frozen (``--freeze_feature_encoder``)."""
        window = task_args.encoder_window_seconds if task_args is not None else None
        family = family_for_type(config.model_type)
        if window is not None:
            longest = family.input_window(config)
            if longest is None:
                raise ConfigError(
                    f"--encoder_window_seconds {window}: only models with a fixed input window "
                    f"(Whisper) have one to shorten, and {path} is a '{config.model_type}' model; "
                    "leave it out"
                )
            if window > longest:
                raise ConfigError(
                    f"--encoder_window_seconds {window}: {path}'s window is {longest:g} s; give at "
                    "most that"
                )
            if from_scratch:
                family.set_input_window(config, window)
        model, loading = super().load_model(
            path, config, task_args, from_scratch=from_scratch, **kwargs
        )
        if window is not None and window < family.input_window(model.config):
            family.set_input_window(model, window)
        if task_args is None or task_args.freeze_feature_encoder:
            keep_feature_encoder_frozen(model)
        return model, loading

    def describe_model(self, model):
        facts = {}
        window = family_of(model).input_window(model.config)
        if window is not None:
            facts["input_window_seconds"] = window
        frozen = getattr(model, KEEP_FROZEN_ATTRIBUTE, None)
        if frozen:
            facts["kept_frozen"] = list(frozen)
        return facts

    def find_input_column(self, features, columns, task_args):
        from hftl.data import pick_column

        typed = [c for c in columns if isinstance(features[c], Audio)]
        return pick_column(
            "audio",
            task_args.audio_column_name,
            columns,
            typed=typed,
            by_name=[
                c for c in AUDIO_NAMES if c in columns and (c in typed or is_text(features[c]))
            ],
        )

    def check_inputs(self, dataset, column, task_args=None):
        return check_audio(dataset, column)

    def batch_inputs(self, processor, task_args):
        self._set_window(processor, task_args)
        mask = self._mask(processor, task_args)
        transform = audio_batch_transform(processor, "input", "labels", None, mask)
        collator = AudioCollator(processor, mask)
        return lambda values: collator(rows_of(transform({"input": values})))

    @staticmethod
    def _set_window(processor, task_args) -> None:
        if task_args.encoder_window_seconds is not None and isinstance(
            processor, WhisperFeatureExtractor
        ):
            set_whisper_window(processor, task_args.encoder_window_seconds)

    @staticmethod
    def _mask(processor, task_args) -> bool:
        """Whether batches carry an attention mask: asked for and read by the model (a saved
        feature extractor says what the run decided)."""
        asked = bool(task_args.attention_mask) and takes_attention_mask(processor)
        return asked and getattr(processor, "return_attention_mask", True) is not False

    def prepare(self, raw, processor, columns, task_args, training_args):
        training_args.remove_unused_columns = False  # the transform needs the raw audio column
        rate = processor.sampling_rate
        self._set_window(processor, task_args)
        mask = bool(task_args.attention_mask) and takes_attention_mask(processor)
        if "attention_mask" in processor.model_input_names:
            processor.return_attention_mask = mask  # saved with it: pipeline() does the same
        max_samples = round(task_args.max_length_seconds * rate)
        window = _window_samples(processor)
        if window is not None and window < max_samples:
            max_samples = window  # the model sees no more: crops stay random within the clip
        longest = max(raw["train"][SECONDS_COLUMN], default=0.0)  # from check_audio's headers
        crops = longest > max_samples / rate
        logger.info(
            "audio: %d Hz mono; training clips up to %.2f s%s; %s",
            rate, longest,
            f", cut to random {max_samples / rate:g} s windows" if crops else " (none cut)",
            "with an attention mask" if mask else "no attention mask",
        )  # fmt: skip
        if window is not None:
            cut = sum(d > window / rate for d in raw["validation"][SECONDS_COLUMN])
            if cut:
                logger.warning(
                    "audio: %d validation clips are longer than the model's %g s window; it "
                    "reads their first %g s", cut, window / rate, window / rate,
                )  # fmt: skip
        evaluation = audio_batch_transform(processor, columns.inputs, columns.label, None, mask)
        return Prepared(
            train=raw["train"].with_transform(
                audio_batch_transform(
                    processor, columns.inputs, columns.label, max_samples if crops else None, mask
                )  # fmt: skip
            ),
            eval=raw["validation"].with_transform(evaluation),
            collator=AudioCollator(processor, mask),
            test=raw["test"].with_transform(evaluation) if "test" in raw else None,
        )


# --------------------------------------------------------------------------------------------
# The preprocessing's side of Whisper's window (the model's is its family's), the frozen feature
# encoder
# --------------------------------------------------------------------------------------------


def set_whisper_window(processor: WhisperFeatureExtractor, seconds: int) -> None:
    """Make a Whisper feature extractor pad (and cut) to ``seconds`` instead of 30."""
    processor.chunk_length = seconds
    processor.n_samples = seconds * processor.sampling_rate
    processor.nb_max_frames = processor.n_samples // processor.hop_length


def keep_feature_encoder_frozen(model: nn.Module) -> None:
    """Name the model's convolutional feature encoder (speech models) as kept frozen: no
    strategy trains it (:attr:`hftl.layers.LayerMap.kept_frozen`)."""
    names = family_of(model).stem_modules(model)
    if names:
        setattr(model, KEEP_FROZEN_ATTRIBUTE, tuple(names))
        for name in names:
            model.get_submodule(name).requires_grad_(False)
        logger.info("feature encoder kept frozen (--freeze_feature_encoder): %s", ", ".join(names))


def takes_attention_mask(processor) -> bool:
    """Whether the model behind this feature extractor reads an attention mask over padding
    (the wav2vec2 family does; Whisper and AST pad to a fixed length and take none)."""
    if isinstance(processor, (WhisperFeatureExtractor, ASTFeatureExtractor)):
        return False
    return "attention_mask" in processor.model_input_names


def _window_samples(processor) -> int | None:
    """The fixed input length (in samples) of a feature extractor that pads to one (Whisper)."""
    if isinstance(processor, WhisperFeatureExtractor):
        return int(processor.n_samples)
    return None


# --------------------------------------------------------------------------------------------
# Decoding, checking, batching
# --------------------------------------------------------------------------------------------


def _source(value):
    if value.get("bytes"):
        return BytesIO(value["bytes"])
    return value["path"]


def _where(value, split: str | None = None, index: int | None = None) -> str:
    path = value.get("path") if isinstance(value, dict) else None
    if path:
        return path
    return f"split '{split}' data row {index + 1}" if split is not None else "(in memory)"


def decode_audio(value: dict, rate: int) -> np.ndarray:
    """A ``datasets`` undecoded audio value ({'path', 'bytes'}) -> mono float32 at ``rate``."""
    import soundfile
    import soxr

    try:
        data, source_rate = soundfile.read(_source(value), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, OSError, RuntimeError) as error:
        raise ConfigError(
            f"audio {_where(value)} cannot be decoded ({first_line(error)}); remove or replace it"
        ) from None
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if source_rate != rate:
        wave = soxr.resample(wave, source_rate, rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def random_crop(wave: np.ndarray, length: int) -> np.ndarray:
    """A random window of ``length`` samples (the clip itself where it is not longer)."""
    if len(wave) <= length:
        return wave
    start = int(torch.randint(0, len(wave) - length + 1, (1,)).item())
    return wave[start : start + length]


def audio_batch_transform(processor, audio_column: str, label_column: str, crop: int | None,
                          attention_mask: bool):  # fmt: skip
    """A ``Dataset.set_transform`` function: clips -> the feature extractor's inputs (a random
    ``crop``-sample window of longer clips, where given), labels -> ``labels``."""
    rate = processor.sampling_rate
    names = [n for n in processor.model_input_names if n != "attention_mask" or attention_mask]

    def transform(batch: dict) -> dict:
        waves = [decode_audio(value, rate) for value in batch[audio_column]]
        if crop is not None:
            waves = [random_crop(wave, crop) for wave in waves]
        features = processor(waves, sampling_rate=rate, return_attention_mask=attention_mask)
        out = {name: list(features[name]) for name in names if name in features}
        if label_column in batch:  # inputs alone (hftl predict): no labels
            out["labels"] = batch[label_column]
        return out

    transform.hftl_description = (
        f"audio_batch_transform({audio_column}, {label_column}, crop={crop}, "
        f"mask={attention_mask}, {processor.to_json_string()})"
    )
    transform.hftl_random = crop is not None  # random windows: hftl.feature_cache caches views
    return transform


class AudioCollator:
    """Batches the feature extractor's outputs: inputs of one size are stacked, clips of
    different lengths padded by the feature extractor (with the attention mask where the model
    takes one)."""

    def __init__(self, processor, attention_mask: bool):
        self.processor = processor
        self.attention_mask = attention_mask

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([e["labels"] for e in examples]) if "labels" in examples[0] else None
        inputs = [{k: v for k, v in e.items() if k != "labels"} for e in examples]
        first = self.processor.model_input_names[0]
        shapes = {np.shape(e[first]) for e in inputs}
        if len(shapes) == 1:
            batch = {k: torch.stack([torch.as_tensor(np.asarray(e[k])) for e in inputs])
                     for k in inputs[0]}  # fmt: skip
        else:
            batch = dict(self.processor.pad(
                inputs, padding=True, return_attention_mask=self.attention_mask,
                return_tensors="pt",
            ))  # fmt: skip
        if labels is not None:
            batch["labels"] = labels
        return batch


def check_audio(dataset, column: str):
    """Stop decoding in ``datasets`` (hftl decodes with soundfile, naming any file that fails)
    and read every clip's header now, so an unreadable or empty file stops the run before
    training starts. A column of file paths becomes an audio column (relative paths are read
    from the current directory). Each clip's duration, read from that header, is kept in the
    column ``SECONDS_COLUMN`` (``prepare`` decides on random crops from it)."""
    import soundfile

    for split, data in dataset.items():
        feature = data.features[column]
        if not (isinstance(feature, Audio) or is_text(feature)):
            kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
            raise ConfigError(
                f"split '{split}': column '{column}' holds {kind}, not audio (an Audio feature or "
                "file paths); name the audio column with --audio_column_name"
            )
    if any(is_text(data.features[column]) for data in dataset.values()):
        dataset = dataset.cast_column(column, Value("string"))  # Audio casts from string only
    dataset = dataset.cast_column(column, Audio(decode=False))
    durations = {}
    for split, data in dataset.items():
        if SECONDS_COLUMN in data.column_names:
            raise ConfigError(
                f"split '{split}': column '{SECONDS_COLUMN}' is hftl's own (clip durations); "
                "rename it"
            )
        index, seconds = 0, durations.setdefault(split, [])
        for rows in data.iter(batch_size=256):
            for value in rows[column]:
                if value is None or not (value.get("bytes") or value.get("path")):
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has no '{column}'; fill or drop it"
                    )
                where = _where(value, split, index)
                check_file_exists(value, split, index, "audio")
                try:
                    info = soundfile.info(_source(value))
                except (soundfile.LibsndfileError, OSError, RuntimeError) as error:
                    raise ConfigError(
                        f"split '{split}': audio {where} cannot be read ({first_line(error)}); "
                        "remove or replace it"
                    ) from None
                if info.frames == 0:
                    raise ConfigError(
                        f"split '{split}': audio {where} is empty (no samples); remove it"
                    )
                seconds.append(info.duration)
                index += 1
    return DatasetDict(
        {
            split: data.add_column(SECONDS_COLUMN, durations[split])
            for split, data in dataset.items()
        }
    )
