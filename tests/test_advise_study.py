"""scripts/advise_study.py: its fine-tuning runs are valid recipe configurations, and its
bookkeeping (Kendall tau per dataset, over all pairs, without the controls; the advice's loss) is
right. (The study runs for about 35 minutes; `--quick` is the short run, not part of this suite.)"""

from pathlib import Path

import pytest

from hftl.run import parse_run_config
from hftl.testing import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "advise_study.py"


@pytest.fixture(scope="module")
def study():
    return load_script(SCRIPT)


def test_the_fine_tuning_protocol_is_a_valid_recipe_configuration(study):
    for name, (kind, flags) in study.DATASETS.items():
        tuning = study.IMAGE_TUNING if kind == "image" else study.TEXT_TUNING
        argv = ["--model_name_or_path", "hftl:minilm", *flags, *tuning, "--output_dir", "x"]
        _, data, _, training, _ = parse_run_config(study.TASK_NAMES[kind], argv)
        assert training.strategy == "full" and training.layer_decay == 0.8, name
        assert data.train_dir or data.train_file


def row(dataset, model, logme, accuracy, advised=False):
    return {"dataset": dataset, "model": model, "logme": logme, "probe_accuracy": logme,
            "leep": None, "nce": None, "accuracy": accuracy, "advised": advised}  # fmt: skip


def test_ranking_summary(study):
    rows = [
        # a: LogME orders the three pretrained models as their accuracy does; the control last
        row("a", "m1", 0.3, 0.9, advised=True), row("a", "m2", 0.2, 0.8), row("a", "m3", 0.1, 0.7),
        row("a", "m1 (random init)", 0.0, 0.5),
        # b: reversed among the pretrained ones; the advised model is 4 points below the best
        row("b", "m1", 0.3, 0.70, advised=True), row("b", "m2", 0.2, 0.72), row("b", "m3", 0.1, 0.74),
        row("b", "m1 (random init)", 0.0, 0.5),
    ]  # fmt: skip
    summary = study.ranking_summary(rows)
    assert summary["per_dataset"]["a"]["logme"] == 1.0
    # b: 3 discordant pairs among the pretrained, 3 concordant with the control: tau 0
    assert summary["per_dataset"]["b"]["logme"] == 0.0
    assert summary["logme_pretrained_only"] == {"a": 1.0, "b": -1.0}
    assert summary["per_dataset"]["b"]["advice_loss_points"] == 4.0
    assert summary["per_dataset"]["a"]["advice_loss_points"] == 0.0
    assert summary["mean_over_datasets"]["logme"] == 0.5
    assert summary["pooled"]["leep"] is None  # no model had a source head
