"""Text classification (sentiment, binary or multi-class) by transfer learning: any
AutoModelForSequenceClassification checkpoint, BERT family first.

    python recipes/sentiment.py --config recipes/configs/bert_base_full_llrd.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/sentiment.py \
        --config recipes/configs/distilbert_gradual.yaml --train_file reviews.csv

Data: --dataset_name (Hub) or --train_file/--validation_file (CSV/JSON/JSONL/Parquet) with a text
and a label column (auto-detected, or --text_column_name / --label_column_name). The output
directory holds a model that `pipeline("text-classification", model=OUTPUT_DIR)` loads.
"""

import logging
import sys

from transformers import DataCollatorWithPadding, set_seed

from hftl import ModelArguments, TransferTrainer, TransferTrainingArguments, parse_config
from hftl.data import DataArguments, load_classification_data
from hftl.errors import run_main
from hftl.metrics import compute_metrics_fn
from hftl.models import load_classifier, load_processor
from hftl.outputs import finish_run, start_run
from hftl.preprocessing import tokenize_dataset

logger = logging.getLogger("hftl.recipes.sentiment")


def main(argv=None) -> tuple[dict, TransferTrainer]:
    """Run the recipe; returns the validation report and the trainer (its model is the final one)."""
    model_args, data_args, training_args = parse_config(
        (ModelArguments, DataArguments, TransferTrainingArguments),
        argv,
        prog="sentiment.py",
        # Batches of similar length: with per-batch padding, far fewer pad tokens to compute on
        # (docs/benchmarks.md). A config or flag may set it back to "random".
        defaults={"train_sampling_strategy": "group_by_length"},
    )

    # ----- output directory (a finished run is refused; an interrupted one resumes), logging -----
    resume = start_run((model_args, data_args, training_args))
    set_seed(training_args.seed)

    # ----- the pretrained model's preprocessing (a wrong model path stops here, before the data)
    tokenizer = load_processor(model_args, task="text")

    # ----- data: splits, columns, label names (checked) -----
    raw, columns, labels = load_classification_data(
        data_args, task="text", seed=training_args.seed, cache_dir=model_args.cache_dir
    )

    # ----- model: the pretrained checkpoint with a new head for these labels -----
    model = load_classifier(model_args, task="text", labels=labels)
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_dataset(
            raw,
            tokenizer,
            columns.inputs,
            columns.label,
            data_args.max_seq_length,
            data_args.pad_to_max_length,
        )

    # ----- trainer: strategy, LLRD groups, dynamic padding, metrics, early stopping -----
    trainer = TransferTrainer(
        model,
        training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics_fn(labels),
        processing_class=tokenizer,
    )

    # ----- train -----
    trainer.train(resume_from_checkpoint=resume)

    # ----- evaluate; save model, processor, config, metrics, log, card; push if asked -----
    report = finish_run(
        trainer, tokenized["validation"], labels, (model_args, data_args, training_args)
    )
    return report, trainer


if __name__ == "__main__":
    sys.exit(run_main(main, "sentiment.py"))
