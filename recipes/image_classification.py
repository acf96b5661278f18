"""Image classification by transfer learning: any AutoModelForImageClassification or timm model.

    python recipes/image_classification.py --config recipes/configs/vit_base_feature_extraction.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/image_classification.py \
        --config recipes/configs/resnet50_partial.yaml --train_dir my_photos/

Data: --dataset_name (Hub), --train_dir/--validation_dir (a folder per class) or --train_file
(CSV/JSON/Parquet with an image column). The output directory holds a model that
`pipeline("image-classification", model=OUTPUT_DIR)` loads.

The steps are hftl.run.run_task's; what is specific to images (the image processor, the
augmentation, the image column) is hftl/tasks/image_classification.py.
"""

import sys

from hftl.errors import run_main
from hftl.tune import run_or_tune

TASK = "image-classification"  # hftl/tasks/: the task this recipe runs


def main(argv=None):
    """Run the recipe; returns the validation report and the trainer (its model is the final one).
    With --tune (and hftl tune's flags: --n_trials, --budget_minutes, ...), tune it instead
    (hftl tune: the study's results)."""
    return run_or_tune(TASK, argv, prog="image_classification.py")


if __name__ == "__main__":
    sys.exit(run_main(main, "image_classification.py"))
