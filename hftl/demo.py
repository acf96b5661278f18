"""``hftl demo``: every strategy of the core on a tiny model, on the CPU, in well under a minute.

This is the interim demo: it runs the real TransferTrainer on a tiny *random* BERT and a toy task
(does the sequence contain token 7?), so it shows the machinery (freezing, LLRD groups, gradual
unfreezing) rather than the benefit of pretraining.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftl demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output_dir", default=None, help="where runs are written (default: a temp dir)"
    )
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--train_examples", type=int, default=1024)
    args = parser.parse_args(argv)

    from transformers import set_seed

    from hftl import TransferTrainer
    from hftl.testing import keyword_dataset, quiet_training_args, tiny_bert

    train, test = keyword_dataset(args.train_examples, seed=0), keyword_dataset(256, seed=1)
    test_labels = np.asarray(test.with_format("numpy")["labels"])
    majority = max(test_labels.mean(), 1 - test_labels.mean())
    settings = {
        "feature_extraction": {"head_lr_multiplier": 1.0},
        "partial": {"num_trainable_layers": 1, "head_lr_multiplier": 3.0},
        "full": {"layer_decay": 0.8, "head_lr_multiplier": 3.0},
        "gradual": {"layer_decay": 0.8, "head_lr_multiplier": 3.0, "unfreeze_every": 1},
    }
    output_root = args.output_dir or tempfile.mkdtemp(prefix="hftl-demo-")
    print(
        f"toy task: does a sequence contain token 7? train {len(train)}, test {len(test)}, "
        f"majority baseline {majority:.1%}"
    )
    results = []
    for strategy, extra in settings.items():
        set_seed(0)
        model = tiny_bert(num_labels=2, layers=4)
        training_args = quiet_training_args(
            f"{output_root}/{strategy}",
            strategy=strategy,
            learning_rate=3e-3,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=32,
            weight_decay=0.01,
            **extra,
        )
        trainer = TransferTrainer(model, training_args, train_dataset=train)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        logits = trainer.predict(test).predictions
        accuracy = float((np.argmax(logits, -1) == test_labels).mean())
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results.append((strategy, accuracy, trained, seconds))
    print(f"\n{'strategy':<20}{'test acc':>9}{'trainable params':>18}{'seconds':>9}")
    for strategy, accuracy, trained, seconds in results:
        print(f"{strategy:<20}{accuracy:>9.1%}{trained:>18,}{seconds:>9.1f}")
    print(
        f"(majority baseline {majority:.1%}; tiny random BERT, so feature extraction has only "
        "random features to work with)"
    )
    return 0
