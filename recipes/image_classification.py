"""Image classification by transfer learning: any AutoModelForImageClassification or timm model.

    python recipes/image_classification.py --config recipes/configs/vit_base_feature_extraction.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/image_classification.py \
        --config recipes/configs/resnet50_partial.yaml --train_dir my_photos/

Data: --dataset_name (Hub), --train_dir/--validation_dir (a folder per class) or --train_file
(CSV/JSON/Parquet with an image column). The output directory holds a model that
`pipeline("image-classification", model=OUTPUT_DIR)` loads.
"""

import logging
import sys

from transformers import set_seed

from hftl import ModelArguments, TransferTrainer, TransferTrainingArguments, parse_config
from hftl.data import DataArguments, load_classification_data
from hftl.errors import run_main
from hftl.metrics import compute_metrics_fn
from hftl.models import load_classifier, load_processor
from hftl.outputs import finish_run, start_run
from hftl.preprocessing import collate_images, image_batch_transform

logger = logging.getLogger("hftl.recipes.image_classification")


def main(argv=None) -> tuple[dict, TransferTrainer]:
    """Run the recipe; returns the validation report and the trainer (its model is the final one)."""
    model_args, data_args, training_args = parse_config(
        (ModelArguments, DataArguments, TransferTrainingArguments),
        argv,
        prog="image_classification.py",
    )
    training_args.remove_unused_columns = False  # the transform needs the raw image column

    # ----- output directory (a finished run is refused; an interrupted one resumes), logging -----
    resume = start_run((model_args, data_args, training_args))
    set_seed(training_args.seed)

    # ----- the pretrained model's preprocessing (a wrong model path stops here, before the data)
    processor = load_processor(model_args, task="image")

    # ----- data: splits, columns, label names (checked) -----
    raw, columns, labels = load_classification_data(
        data_args, task="image", seed=training_args.seed, cache_dir=model_args.cache_dir
    )

    # ----- model: the pretrained checkpoint with a new head for these labels -----
    model = load_classifier(model_args, task="image", labels=labels)
    augment = data_args.augmentation
    if augment and training_args.strategy == "feature_extraction" and training_args.feature_cache:
        logger.info(
            "feature cache off: augmentation makes every epoch's features different "
            "(--augmentation false caches them, about one backbone pass in all)"
        )
        training_args.feature_cache = False
    train_dataset = raw["train"].with_transform(
        image_batch_transform(processor, columns.inputs, columns.label, train=augment)
    )
    eval_dataset = raw["validation"].with_transform(
        image_batch_transform(processor, columns.inputs, columns.label, train=False)
    )

    # ----- trainer: strategy, LLRD groups, metrics, early stopping -----
    trainer = TransferTrainer(
        model,
        training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_images,
        compute_metrics=compute_metrics_fn(labels),
        processing_class=processor,
    )

    # ----- train -----
    trainer.train(resume_from_checkpoint=resume)

    # ----- evaluate, save model + processor + config + metrics + log -----
    report = finish_run(trainer, eval_dataset, labels, (model_args, data_args, training_args))
    return report, trainer


if __name__ == "__main__":
    sys.exit(run_main(main, "image_classification.py"))
