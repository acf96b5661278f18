"""Audio classification by transfer learning: any AutoModelForAudioClassification checkpoint
(wav2vec2, HuBERT, WavLM, AST, Whisper's encoder, ...).

    python recipes/audio_classification.py --config recipes/configs/wav2vec2_base_keyword_spotting.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/audio_classification.py \
        --config recipes/configs/distilhubert_keyword_spotting_feature_extraction.yaml

Data: --dataset_name (Hub, an Audio column), --train_dir/--validation_dir (a folder per class of
WAV / FLAC / Ogg / MP3 files) or --train_file (CSV/JSON/Parquet with a column of audio file
paths). The output directory holds a model that `pipeline("audio-classification",
model=OUTPUT_DIR)` loads.

The steps are hftl.run.run_task's; what is specific to audio (decoding, resampling, random crops,
the feature extractor, Whisper's window) is hftl/tasks/audio.py.
"""

import sys

from hftl.errors import run_main
from hftl.tune import run_or_tune

TASK = "audio-classification"  # hftl/tasks/: the task this recipe runs


def main(argv=None):
    """Run the recipe; returns the validation report and the trainer (its model is the final one).
    With --tune (and hftl tune's flags: --n_trials, --budget_minutes, ...), tune it instead
    (hftl tune: the study's results)."""
    return run_or_tune(TASK, argv, prog="audio_classification.py")


if __name__ == "__main__":
    sys.exit(run_main(main, "audio_classification.py"))
