"""scripts/forgetting_study.py: its runs are valid recipe configurations, its bookkeeping is right.
(The study itself runs for most of an hour; `--quick` is the short run, not part of this suite.)"""

from pathlib import Path

import pytest

from hftl.run import parse_run_config
from hftl.testing import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "forgetting_study.py"


@pytest.fixture(scope="module")
def study():
    return load_script(SCRIPT)


def test_every_method_is_a_valid_recipe_configuration(study, tmp_path):
    for method in study.TEXT_METHODS:
        argv = study.text_flags(method, seed=0, size=100, epochs=1, output_dir=tmp_path)
        _, _, _, training, _ = parse_run_config("text-classification", argv)
        assert training.strategy == method and training.guards == ["wise_ft"]
        assert training.wise_ft_alpha == 1.0  # the end point itself; the script mixes the rest
    for method, extra in study.IMAGE_METHODS.items():
        argv = [*study.image_flags("hftl:efficientnet-lite0", "hftl:fashion-mnist/train",
                                   "hftl:fashion-mnist/test", 100, 1, 0, tmp_path),
                "--reference_train_dir", "hftl:mnist/train", *extra]  # fmt: skip
        _, _, _, training, reference = parse_run_config("image-classification", argv)
        named = [g for g in ("l2sp", "ewc", "lwf", "replay", "wise_ft") if g in method]
        assert sorted(training.guards or []) == sorted(named), method
        assert reference.reference_train_dir == "hftl:mnist/train"


def test_text_summary_and_verdicts(study, tmp_path):
    rows = []
    for seed in (0, 1):
        for method, base in (("full", 0.80), ("lp_ft", 0.81)):
            for alpha in (0.5, 1.0):
                ood = base - 0.1 + (0.02 if alpha == 0.5 else 0) + seed * 0.01
                rows.append({"seed": seed, "method": method, "alpha": alpha,
                             "rt_test": base - (0.001 if alpha == 0.5 else 0), "amazon": ood,
                             "tweets": ood, "nyt": ood, "ood_mean": ood})  # fmt: skip
    summary = study.summarise_text(rows)
    assert summary["full@1"]["ood_mean"] == pytest.approx([0.705, 0.7, 0.71])
    verdicts = study.text_verdicts(summary)
    assert verdicts[0].startswith("LP-FT: out of distribution +1.0 points, in distribution +1.0")
    assert verdicts[0].endswith("target met")
    assert (
        "WiSE-FT of full, alpha 0.5: out of distribution +2.0 points, in distribution -0.1"
        in verdicts[1]
    )
    meta = {"command": "x", "hardware": "cpu", "date": "d", "wall_time_minutes": 1, "size": 10,
            "epochs": 1, "seeds": [0, 1], "eval_rows": {}}  # fmt: skip
    study.write_text_report(rows, meta, tmp_path)
    report = (tmp_path / "results.md").read_text()
    assert "| `full@1` | 0.800 [0.800-0.800]" in report and (tmp_path / "id_vs_ood.png").is_file()


def test_image_summary_and_verdicts(study, tmp_path):
    rows = [
        {"seed": s, "method": m, "fashion": f, "digits_before": 0.95, "digits_after": 0.95 - g,
         "forgetting": g, "seconds": 1.0}
        for s in (0, 1)
        for m, f, g in (("plain", 0.85, 0.40), ("ewc", 0.845, 0.15), ("l2sp", 0.80, 0.10),
                        ("lwf", 0.85, 0.30))
    ]  # fmt: skip
    verdicts = {
        line.split("`")[1]: line for line in study.image_verdict(study.summarise_images(rows))
    }
    assert verdicts["ewc"].endswith("meets the target") and "(halved)" in verdicts["ewc"]
    assert verdicts["l2sp"].endswith("misses the target")  # halved, but 5 points on fashion
    assert "(not halved)" in verdicts["lwf"]
    meta = {"command": "x", "hardware": "cpu", "date": "d", "wall_time_minutes": 1, "size": 10,
            "epochs": 1, "seeds": [0, 1], "image_size": 112, "digits_accuracy": 0.95,
            "task_a_size": 2000}  # fmt: skip
    study.write_image_report(rows, meta, tmp_path)
    assert "| `ewc` | 0.845 [0.845-0.845]" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "forgetting.png").is_file()
