"""scripts/transfer_study.py: its arms are valid recipe arguments, its bookkeeping is right.
(The study itself runs for an hour; `--quick` is the CI-sized run, not part of this suite.)"""

from pathlib import Path

import pytest

from hftl.run import parse_run_config
from hftl.testing import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "transfer_study.py"


@pytest.fixture(scope="module")
def study():
    return load_script(SCRIPT)


@pytest.mark.parametrize("task", ["text", "image", "audio"])
def test_every_arm_is_a_valid_recipe_configuration(study, task, tmp_path):
    spec = study.TASKS[task]
    for arm in spec["arms"]:
        argv = ["--model_name_or_path", spec["model"], *spec["data"], *study.arm_flags(arm, spec, steps=90),
                "--output_dir", str(tmp_path), "--report_to", "none"]  # fmt: skip
        recipe = study.load_recipe(spec["recipe"])
        model_args, _, _, training_args, _ = parse_run_config(recipe.TASK, argv)
        assert model_args.from_scratch == (arm == "scratch")
        if arm == "gradual":
            assert (training_args.unfreeze_unit, training_args.unfreeze_every) == ("step", 10)
        if arm in study.POOLING_ARMS:  # the same arm, the head reading [CLS] instead
            plain = study.arm_flags(study.POOLING_ARMS[arm], spec, steps=90)
            assert study.arm_flags(arm, spec, steps=90) == [*plain, "--pooling", "cls"]
    high, normal = (study.arm_flags(a, spec, 90) for a in ("full_high_lr", "full_llrd"))
    assert float(high[high.index("--learning_rate") + 1]) == pytest.approx(
        30 * float(normal[normal.index("--learning_rate") + 1])
    )


def test_epochs_give_about_the_same_steps_at_every_size(study):
    assert study.epochs_for(1000, 32, steps=60) == 2
    assert study.epochs_for(200, 16, steps=60) == 5
    assert study.epochs_for(50, 16, steps=60) == 20
    assert study.epochs_for(10, 32, steps=60, max_epochs=30) == 30


def test_summary_and_plot_from_rows(study, tmp_path):
    rows = []
    for task in ("text", "image"):
        for size, base in ((50, 0.5), (200, 0.7)):
            for seed in (0, 1):
                for arm in ("scratch", "full_llrd"):
                    accuracy = round(base + 0.1 * seed, 4)
                    rows.append({"task": task, "size": size, "seed": seed, "arm": arm, "epochs": 2,
                                 "accuracy": accuracy, "macro_f1": accuracy, "seconds": 1.0})  # fmt: skip
    summary = study.summarise(rows)
    assert summary["text/200/full_llrd"] == {"mean": 0.75, "min": 0.7, "max": 0.8, "n": 2}
    meta = {
        "command": "c",
        "hardware": "h",
        "wall_time_minutes": 1,
        "steps_per_run": 60,
        "image_size": 112,
    }
    study.write_report(rows, meta, tmp_path)
    assert (tmp_path / "accuracy_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "results.md").read_text()
    assert "| full_llrd | 55.0% [50.0%-60.0%] | 75.0% [70.0%-80.0%] |" in report
