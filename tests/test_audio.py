"""The audio task: decoding and cropping, the layer map of speech models, the kept-frozen feature
encoder, Whisper's shortened window, the recipe end to end on tiny checkpoints and real files
(WAV / FLAC / Ogg, mono and stereo, three sample rates), and pipeline() on what it saved."""

import csv

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

from hftl import TransferTrainer, build_layer_map
from hftl.errors import ConfigError
from hftl.families import family_of, split_for
from hftl.tasks.audio import (
    decode_audio,
    keep_feature_encoder_frozen,
    random_crop,
    set_whisper_window,
)
from hftl.testing import (
    AUDIO_RATE,
    TONES_HZ,
    quiet_training_args,
    save_tiny_audio_checkpoint,
    tiny_feature_extractor,
    tiny_wav2vec2,
    tiny_whisper,
    tone_dataset,
    tone_waves,
    write_toy_audio_folder,
)
from tests.test_recipes import (
    QUIET,
    InitialLogits,
    assert_saved_model_is_the_trained_one,
    run_recipe,
)

CLASSES = ("low", "mid", "high")


@pytest.fixture(scope="module")
def audio_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    write_toy_audio_folder(root / "train", per_class=12, classes=CLASSES, seed=0)
    write_toy_audio_folder(root / "validation", per_class=4, classes=CLASSES, seed=1)
    for kind in ("wav2vec2", "whisper", "ast"):
        save_tiny_audio_checkpoint(root / kind, kind, num_labels=2)
    return root


def run_audio(setup, kind, out, *extra, callbacks=None):
    argv = ["--model_name_or_path", str(setup / kind), "--train_dir", str(setup / "train"),
            "--validation_dir", str(setup / "validation"), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--learning_rate", "3e-3",
            "--max_length_seconds", "0.5", *QUIET, *extra]  # fmt: skip
    return run_recipe("audio_classification", argv, callbacks)


def tones(seconds=0.3, rate=AUDIO_RATE):
    """One clean tone per class, as the pipeline takes them."""
    t = np.arange(int(rate * seconds)) / rate
    return [(0.5 * np.sin(2 * np.pi * hz * t)).astype("float32") for hz in TONES_HZ]


# --------------------------------------------------------------------------------------------
# Decoding and cropping
# --------------------------------------------------------------------------------------------


def test_stereo_is_averaged_to_mono_and_resampled_to_the_models_rate(tmp_path):
    rate = 44100
    t = np.arange(rate // 2) / rate  # 0.5 s
    left = np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("float32")
    soundfile.write(tmp_path / "clip.flac", stereo, rate)
    wave = decode_audio({"path": str(tmp_path / "clip.flac"), "bytes": None}, AUDIO_RATE)
    assert wave.dtype == np.float32 and len(wave) == AUDIO_RATE // 2
    # the mean of the channels: half the left channel's amplitude, still at 440 Hz
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) * AUDIO_RATE / len(wave) == pytest.approx(440, abs=2)
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)
    # the same from bytes (a Hub dataset's Audio column)
    raw = (tmp_path / "clip.flac").read_bytes()
    np.testing.assert_array_equal(decode_audio({"path": None, "bytes": raw}, AUDIO_RATE), wave)


def test_random_crop_takes_windows_of_the_length_and_leaves_short_clips():
    wave = np.arange(100, dtype=np.float32)
    torch.manual_seed(0)
    starts = set()
    for _ in range(20):
        window = random_crop(wave, 30)
        assert len(window) == 30 and np.array_equal(window, np.arange(window[0], window[0] + 30))
        starts.add(int(window[0]))
    assert len(starts) > 5  # random, not always the start
    assert random_crop(wave[:20], 30) is not None and len(random_crop(wave[:20], 30)) == 20


# --------------------------------------------------------------------------------------------
# The model: layer map, kept-frozen feature encoder, Whisper's window, the feature cache
# --------------------------------------------------------------------------------------------


def test_conv_feature_encoder_is_the_stem_even_when_it_outweighs_the_blocks():
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
        conv_dim=(64, 64, 64, 64), conv_stride=(5, 2, 2, 2), conv_kernel=(10, 3, 3, 3),
        feat_extract_norm="layer", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_labels=3,
    )  # fmt: skip
    model = Wav2Vec2ForSequenceClassification(config)
    stem = sum(p.numel() for p in model.wav2vec2.feature_extractor.parameters())
    blocks = sum(p.numel() for p in model.wav2vec2.encoder.layers.parameters())
    assert stem > blocks  # the largest block list by size would be the conv layers
    layer_map = build_layer_map(model)
    assert layer_map.num_blocks == 2
    depths = layer_map.depths
    assert {d for n, d in depths.items() if ".feature_extractor." in n} == {0}
    assert depths["wav2vec2.encoder.layers.1.attention.q_proj.weight"] == 2
    assert depths["classifier.weight"] == depths["projector.weight"] == 3


def test_whisper_classifier_has_the_encoder_as_backbone_and_fixed_positions_kept_frozen():
    model = tiny_whisper(layers=2)
    layer_map = build_layer_map(model)
    depths = layer_map.depths
    assert layer_map.num_blocks == 2
    assert depths["encoder.conv1.weight"] == 0
    assert depths["encoder.layers.1.fc1.weight"] == 2
    assert depths["encoder.layer_norm.weight"] == 2  # the final norm goes with the last block
    assert {n for n, d in depths.items() if d == 3} == {
        "projector.weight", "projector.bias", "classifier.weight", "classifier.bias",
    }  # fmt: skip
    assert layer_map.kept_frozen == {"encoder.embed_positions.weight"}


@pytest.mark.parametrize("freeze", [True, False])
def test_feature_encoder_stays_frozen_under_full_fine_tuning_and_gradual_unfreezing(
    tmp_path, freeze
):
    torch.manual_seed(0)
    model = tiny_wav2vec2()
    if freeze:
        keep_feature_encoder_frozen(model)
    args = quiet_training_args(
        tmp_path, strategy="gradual", unfreeze_every=1, unfreeze_unit="step", max_steps=5,
        per_device_train_batch_size=4, learning_rate=1e-2,
    )  # fmt: skip
    trainer = TransferTrainer.build(model, args, train_dataset=tone_dataset(8, kind="wav2vec2"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()  # by step 4 every depth trains (L = 2)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    encoder = {n for n in before if ".feature_extractor." in n}
    assert "wav2vec2.feature_projection.projection.weight" in moved  # depth 0 trains
    assert "wav2vec2.encoder.layers.0.attention.q_proj.weight" in moved
    if freeze:
        assert not moved & encoder
        assert all(not model.get_parameter(n).requires_grad for n in encoder)
    else:
        assert encoder <= moved


def test_shortened_whisper_window_keeps_the_first_positions_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = tiny_whisper()  # a 1 s window: 50 positions
    original = model.encoder.embed_positions.weight.detach().clone()
    processor = tiny_feature_extractor("whisper")
    config = model.config
    config.max_source_positions = 100  # as if pretrained on 2 s: cut it back to 1 s
    model = AutoModelForAudioClassification.from_config(config)
    model.encoder.embed_positions.weight.data[:50] = original
    family_of(model).set_input_window(model, 1)  # seconds: 50 positions
    assert model.config.max_source_positions == 50
    torch.testing.assert_close(model.encoder.embed_positions.weight, original)
    assert not model.encoder.embed_positions.weight.requires_grad
    set_whisper_window(processor, 1)
    waves = tones()
    inputs = processor(waves, sampling_rate=AUDIO_RATE, return_tensors="pt")
    assert inputs["input_features"].shape[-1] == 100
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(**inputs).logits, model.eval()(**inputs).logits, atol=1e-5, rtol=1e-5
        )
    assert AutoFeatureExtractor.from_pretrained(tmp_path).n_samples == AUDIO_RATE


def test_cached_speech_features_respect_the_attention_mask_over_padding():
    torch.manual_seed(0)
    model = tiny_wav2vec2().eval()
    extractor = tiny_feature_extractor("wav2vec2")
    waves, _ = tone_waves(3, seed=1)
    batch = extractor(
        [waves[0][:800], waves[1], waves[2][:1200]], sampling_rate=AUDIO_RATE, padding=True,
        return_attention_mask=True, return_tensors="pt",
    )  # fmt: skip
    split = split_for(model)
    with torch.no_grad():
        expected = model(**batch).logits
        features = split.extract(model, batch)
        torch.testing.assert_close(split.head(model, features), expected, atol=1e-5, rtol=1e-5)
        alone = model(**extractor(waves[0][:800], sampling_rate=AUDIO_RATE, return_tensors="pt"))
    # the padded clip's features are its own: the padding is left out of the mean
    torch.testing.assert_close(split.head(model, features[:1]), alone.logits, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# The recipe end to end
# --------------------------------------------------------------------------------------------

STRATEGY_FLAGS = {
    "feature_extraction": [],
    "partial": ["--num_trainable_layers", "1"],
    "full": ["--layer_decay", "0.8"],
    "gradual": ["--unfreeze_every", "2", "--unfreeze_unit", "step"],
    "lora": ["--lora_r", "4"],
}


@pytest.mark.parametrize(
    "kind, strategy",
    [("wav2vec2", s) for s in sorted(STRATEGY_FLAGS)]
    + [("whisper", "full"), ("whisper", "lora"), ("ast", "feature_extraction"), ("ast", "gradual")],
)
def test_audio_each_strategy_saves_a_model_pipeline_loads(audio_setup, tmp_path, kind, strategy):
    out = tmp_path / "out"
    extractor = AutoFeatureExtractor.from_pretrained(audio_setup / kind)
    inputs = extractor(tones(), sampling_rate=AUDIO_RATE, return_tensors="pt")  # one length
    initial = InitialLogits({k: v for k, v in inputs.items() if k != "attention_mask"})
    report, trainer = run_audio(audio_setup, kind, out, "--strategy", strategy, "--max_steps", "4",
                                *STRATEGY_FLAGS[strategy], callbacks=[initial])  # fmt: skip
    assert report["labels"] == ["high", "low", "mid"]  # the folder names
    if strategy != "lora":
        assert_saved_model_is_the_trained_one(
            out, trainer, AutoModelForAudioClassification, initial
        )
    classifier = pipeline("audio-classification", model=str(out))
    results = classifier({"raw": tones()[0], "sampling_rate": AUDIO_RATE})
    assert {r["label"] for r in results} == {"high", "low", "mid"}
    card = (out / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "- audio\n" in card


def test_audio_toy_task_is_learned_and_pipeline_predicts_what_the_model_does(audio_setup, tmp_path):
    out = tmp_path / "out"
    report, trainer = run_audio(
        audio_setup, "wav2vec2", out, "--strategy", "full", "--num_train_epochs", "6",
        "--learning_rate", "2e-3",
    )  # fmt: skip
    # Seeded tiny checkpoint and data: the same run every time (chance is 1/3).
    assert report["accuracy"] >= 0.9, report
    classifier = pipeline("audio-classification", model=str(out))
    predicted = [classifier({"raw": w, "sampling_rate": AUDIO_RATE})[0]["label"] for w in tones()]
    assert predicted == list(CLASSES)  # low, mid, high pitch
    model = AutoModelForAudioClassification.from_pretrained(out).eval()
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert extractor.return_attention_mask  # --attention_mask true: saved with the extractor
    with torch.no_grad():
        logits = model(
            **extractor(tones()[1], sampling_rate=AUDIO_RATE, return_tensors="pt")
        ).logits
    assert model.config.id2label[int(logits.argmax())] == "mid"


def test_training_clips_are_cut_to_random_windows_and_validation_clips_are_whole(
    audio_setup, tmp_path
):
    from hftl.data import DataArguments
    from hftl.feature_cache import is_random
    from hftl.run import load_classification_data
    from hftl.tasks import TASKS
    from hftl.tasks.audio import AudioClassificationArguments

    task = TASKS.get("audio-classification")
    task_args = AudioClassificationArguments(max_length_seconds=0.5)
    data = DataArguments(
        train_dir=str(audio_setup / "train"), validation_dir=str(audio_setup / "validation")
    )
    raw, columns, _ = load_classification_data(data, task, task_args, seed=0)
    prepared = task.prepare(raw, tiny_feature_extractor("wav2vec2"), columns, task_args,
                            quiet_training_args(tmp_path))  # fmt: skip
    torch.manual_seed(0)
    train = [prepared.train[i]["input_values"] for i in range(len(prepared.train))]
    assert max(len(x) for x in train) == AUDIO_RATE // 2  # 0.5 s windows of the longer clips
    assert min(len(x) for x in train) < AUDIO_RATE // 2  # shorter clips stay as they are
    assert is_random(prepared.train) and not is_random(prepared.eval)
    longest = max(
        range(len(train)), key=lambda i: raw["train"][i]["audio"]["path"] and len(train[i])
    )
    again = [prepared.train[longest]["input_values"] for _ in range(3)]
    assert any(not np.array_equal(again[0], x) for x in again[1:])  # a new window each read
    evaluated = [len(prepared.eval[i]["input_values"]) for i in range(len(prepared.eval))]
    assert max(evaluated) > AUDIO_RATE  # validation clips are whole (up to 1.5 s)


def test_a_window_longer_than_whisper_s_or_for_another_model_is_refused(audio_setup, tmp_path):
    # The tiny checkpoint has a 1 s window; a 2 s request is refused, a wav2vec2 one too.
    with pytest.raises(
        ConfigError, match=r"--encoder_window_seconds 2: .*window is 1 s; give at most that"
    ):
        run_audio(audio_setup, "whisper", tmp_path / "a", "--encoder_window_seconds", "2")
    with pytest.raises(
        ConfigError,
        match=r"only models with a fixed input window \(Whisper\) have one to shorten, and .* is a 'wav2vec2' model",
    ):
        run_audio(audio_setup, "wav2vec2", tmp_path / "b", "--encoder_window_seconds", "1")


def test_csv_with_audio_paths_and_its_errors(audio_setup, tmp_path, monkeypatch):
    rows = [{"file": str(p), "sound": p.parent.name}
            for p in sorted((audio_setup / "train").glob("*/*"))]  # fmt: skip
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "sound"])
        writer.writeheader()
        writer.writerows(rows)
    report, _ = run_recipe("audio_classification", [
        "--model_name_or_path", str(audio_setup / "wav2vec2"), "--train_file", str(tmp_path / "train.csv"),
        "--label_column_name", "sound", "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
        "--max_length_seconds", "0.5", *QUIET,
    ])  # fmt: skip
    assert report["labels"] == ["high", "low", "mid"]

    rows[3]["file"] = "clips/missing.wav"
    with open(tmp_path / "bad.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "sound"])
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        run_recipe("audio_classification", [
            "--model_name_or_path", str(audio_setup / "wav2vec2"), "--train_file", "bad.csv",
            "--label_column_name", "sound", "--output_dir", str(tmp_path / "out2"), *QUIET,
        ])  # fmt: skip
    assert str(error.value) == (
        "split 'train': data row 4: no audio file clips/missing.wav (a relative path is read from "
        f"the current directory, {tmp_path}); fix the path or drop the row"
    )


def test_an_undecodable_audio_file_in_a_folder_is_named_before_training(audio_setup, tmp_path):
    import shutil

    folder = tmp_path / "train"
    shutil.copytree(audio_setup / "train", folder)
    (folder / "mid" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    with pytest.raises(
        ConfigError,
        match=r"split 'train': audio .*mid/broken.wav cannot be read \(.*\); remove or replace it",
    ):
        run_recipe("audio_classification", [
            "--model_name_or_path", str(audio_setup / "wav2vec2"), "--train_dir", str(folder),
            "--output_dir", str(tmp_path / "out"), *QUIET,
        ])  # fmt: skip
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_pushed_audio_run_loads_by_repo_id_and_its_card_snippet_runs(hub, audio_setup, tmp_path,
                                                                      monkeypatch, capsys):  # fmt: skip
    import re

    from huggingface_hub import ModelCard

    from hftl.hub import push_run

    out = tmp_path / "whisper-run"
    run_audio(audio_setup, "whisper", out, "--strategy", "full", "--max_steps", "3",
              "--encoder_window_seconds", "1")  # fmt: skip
    push_run(out, "tester/tiny-tones")
    card = ModelCard.load("tester/tiny-tones")
    assert card.data.pipeline_tag == "audio-classification" and "audio" in card.data.tags
    assert "a window of 1.0 s" in card.text  # the shortened Whisper window is stated
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    rate = 22050  # the snippet resamples to the model's 16 kHz
    t = np.arange(rate // 2) / rate
    soundfile.write("clip.wav", np.stack([np.sin(2 * np.pi * 300 * t)] * 2, axis=1), rate)
    capsys.readouterr()
    exec(compile(snippet, "card-snippet", "exec"), {})  # the card's code, as a reader runs it
    printed = capsys.readouterr().out
    assert set(re.findall(r"'label': '(\w+)'", printed)) == {"high", "low", "mid"}


def test_linear_probe_is_written_exactly_through_projector_and_classifier(tmp_path):
    from hftl.feature_cache import unwrap

    torch.manual_seed(0)
    split = split_for(tiny_whisper())
    weight, bias = torch.randn(3, 32), torch.randn(3)
    model = tiny_whisper().eval()
    split.set_linear(model, weight, bias)
    features = torch.randn(5, 32)
    with torch.no_grad():
        torch.testing.assert_close(split.head(model, features), features @ weight.T + bias)

    # through the trainer: the probe is fitted on cached features and predicts the toy tones
    args = quiet_training_args(
        tmp_path, strategy="feature_extraction", linear_probe=True, num_train_epochs=0,
        feature_cache_dir="memory",
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = TransferTrainer.build(tiny_whisper(), args,
                                    train_dataset=tone_dataset(48, seed=0, kind="whisper"),
                                    eval_dataset=tone_dataset(24, seed=1, kind="whisper"))  # fmt: skip
    trainer.train()
    assert trainer.state.global_step == 0 and trainer.feature_cache["linear_probe"]["folds"] >= 2
    assert trainer.evaluate()["eval_loss"] < 1.0  # chance is ln 3 = 1.1; the tones are separable
    full = unwrap(trainer.model)
    assert not full.projector.weight[3:].any()  # rows beyond the 3 classes stay zero
