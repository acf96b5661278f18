"""Check the whisper-tiny-en asset's conversion by transcribing real speech with a transcript.

    python scripts/check_whisper_asset.py [LIBRIVOX_DIR]

LIBRIVOX_DIR defaults to the ``librivox-clips`` asset (Debian's pocketsphinx-testdata, fetched
with apt-get). For each clip listed in the folder's ``transcription`` file (16 kHz 16-bit WAV), it prints the
reference and what the converted model transcribes (greedy, English, no timestamps). A wrong
tensor mapping gives gibberish, not near-misses.
"""

import argparse
import re
import wave
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoTokenizer, WhisperForConditionalGeneration

from hftl.assets import fetch

NO_TIMESTAMPS = "<|notimestamps|>"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "librivox_dir", type=Path, nargs="?",
        help="holds the WAVs and 'transcription' (default: the librivox-clips asset)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.librivox_dir = args.librivox_dir or fetch("librivox-clips")
    path = fetch("whisper-tiny-en")
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    features, tokenizer = (
        AutoFeatureExtractor.from_pretrained(path),
        AutoTokenizer.from_pretrained(path),
    )
    start = [model.config.decoder_start_token_id, tokenizer.convert_tokens_to_ids(NO_TIMESTAMPS)]
    for line in (args.librivox_dir / "transcription").read_text().splitlines():
        text, clip = re.match(r"<s> (.*) </s> \((.*)\)", line).groups()
        with wave.open(str(args.librivox_dir / f"{clip}.wav")) as audio:
            rate, frames = audio.getframerate(), audio.readframes(audio.getnframes())
        samples = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768
        inputs = features(samples, sampling_rate=rate, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(
                inputs, decoder_input_ids=torch.tensor([start]), max_new_tokens=120
            )
        print(f"{clip}\n  reference: {text}\n  whisper:   "
              f"{tokenizer.decode(out[0], skip_special_tokens=True).strip()}")  # fmt: skip


if __name__ == "__main__":
    main()
