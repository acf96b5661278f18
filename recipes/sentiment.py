"""Text classification (sentiment, binary or multi-class) by transfer learning: any
AutoModelForSequenceClassification checkpoint, BERT family first.

    python recipes/sentiment.py --config recipes/configs/bert_base_full_llrd.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/sentiment.py \
        --config recipes/configs/distilbert_gradual.yaml --train_file reviews.csv

Data: --dataset_name (Hub) or --train_file/--validation_file (CSV/JSON/JSONL/Parquet) with a text
and a label column (auto-detected, or --text_column_name / --label_column_name). The output
directory holds a model that `pipeline("text-classification", model=OUTPUT_DIR)` loads.

The steps are hftl.run.run_task's; what is specific to text (the tokenizer, per-batch padding,
length-grouped batches, the text column) is hftl/tasks/text_classification.py.
"""

import sys

from hftl.errors import run_main
from hftl.tune import run_or_tune

TASK = "text-classification"  # hftl/tasks/: the task this recipe runs


def main(argv=None):
    """Run the recipe; returns the validation report and the trainer (its model is the final one).
    With --tune (and hftl tune's flags: --n_trials, --budget_minutes, ...), tune it instead
    (hftl tune: the study's results)."""
    return run_or_tune(TASK, argv, prog="sentiment.py")


if __name__ == "__main__":
    sys.exit(run_main(main, "sentiment.py"))
