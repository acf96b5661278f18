"""``hftl tune``: trials run the values drawn, a trial behind the median is pruned, a study
continues after a kill, the best values become a config that trains; on tiny models."""

import csv

import pytest
import yaml

from hftl.cli import main
from hftl.errors import ConfigError
from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

optuna = pytest.importorskip("optuna")

GOOD, USELESS = 0.05, 1e-9  # head learning rates: learns the colours at once / never moves


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    save_tiny_image_checkpoint(root / "vit", "vit", num_labels=2)
    write_toy_image_folder(root / "train", per_class=12, seed=0)
    write_toy_image_folder(root / "validation", per_class=6, seed=1)
    return root


def run_flags(root, out):
    return ["--model_name_or_path", str(root / "vit"), "--train_dir", str(root / "train"),
            "--validation_dir", str(root / "validation"), "--output_dir", str(out),
            "--strategy", "feature_extraction", "--num_train_epochs", "3",
            "--per_device_train_batch_size", "12", "--feature_cache_dir", str(root / "features"),
            "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true"]  # fmt: skip


def open_study(out):
    out.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name="hftl-tune", storage=f"sqlite:///{out / 'study.db'}",
                               direction="maximize", load_if_exists=True)  # fmt: skip


def trial_config(out, number):
    return yaml.safe_load((out / "trials" / f"trial-{number:03d}" / "run_config.yaml").read_text())


def test_a_study_runs_the_values_prunes_the_laggard_continues_and_writes_a_config_that_trains(
    images, tmp_path
):
    out = tmp_path / "study"
    study = open_study(out)  # the values are chosen here, so what happens can be asserted
    for learning_rate in (GOOD, GOOD, USELESS):
        study.enqueue_trial({"learning_rate": learning_rate, "weight_decay": 0.0})
    assert main(["tune", "image-classification", *run_flags(images, out), "--n_trials", "3",
                 "--no_advise"]) == 0  # fmt: skip

    study = open_study(out)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    # each trial trained with its own values, as its run config says, on the features the first
    # trial extracted
    assert [trial_config(out, n)["learning_rate"] for n in range(3)] == [GOOD, GOOD, USELESS]
    log = (out / "trials" / "trial-001" / "train.log").read_text()
    assert "36 examples -> 36x32 features" in log and "(reused)" in log
    assert all(t.user_attrs["metric"] == "accuracy" for t in study.trials)
    good = study.trials[0].user_attrs["value"]
    assert good > 0.9 and study.trials[2].user_attrs["step"] == 3  # stopped at its first epoch
    assert study.trials[2].user_attrs["value"] < good

    # a killed run left a trial running: it fails and its values run again; the study continues
    # to 4 finished trials (one more), the earlier ones are not run again
    killed = study.ask()
    killed.suggest_float("learning_rate", GOOD, GOOD, log=True)
    killed.suggest_float("weight_decay", 0.0, 0.0)
    main(["tune", "image-classification", *run_flags(images, out), "--n_trials", "4"])
    study = open_study(out)
    assert [t.state.name for t in study.trials] == [*states, "FAIL", "COMPLETE"]
    retried = study.trials[4]
    assert retried.params == killed.params
    assert retried.user_attrs["retry_of"] == 3
    assert not (out / "trials" / "trial-005").exists()

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "fail", "complete"]
    assert (out / "learning_rate.png").stat().st_size > 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    best_trial = max((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    assert best["learning_rate"] == best_trial.params["learning_rate"]
    assert best["output_dir"] == str(out / "best")

    # the written config trains: the run takes the best values
    assert main(["train", "image-classification", "--config", str(out / "best.yaml")]) == 0
    trained = yaml.safe_load((out / "best" / "run_config.yaml").read_text())
    assert trained["learning_rate"] == best["learning_rate"]
    assert (out / "best" / "model.safetensors").is_file()


def test_a_new_study_starts_from_advise_and_its_best_predicts_the_test_split_once(images, tmp_path):
    from hftl.strategies import STRATEGIES
    from hftl.tasks import task_of

    out = tmp_path / "study"
    test = ["--do_predict", "--test_dir", str(images / "validation"), "--train_best"]
    main(["tune", "image-classification", *run_flags(images, out), "--n_trials", "1", *test])
    (trial,) = open_study(out).trials
    advised = STRATEGIES.get("feature_extraction").base_learning_rate(
        task_of("image-classification")
    )
    assert trial.user_attrs["source"] == "hftl advise"
    assert trial.params["learning_rate"] == pytest.approx(advised)
    assert trial_config(out, 0)["learning_rate"] == pytest.approx(advised)
    # the trial never saw the test split; the final model of the best values predicted it
    assert trial_config(out, 0).get("do_predict", False) is False
    assert not list((out / "trials").rglob("predictions.jsonl"))
    assert len((out / "best" / "predictions.jsonl").read_text().splitlines()) == 18

    with pytest.raises(ConfigError, match=r"other options \(num_train_epochs\)"):
        from hftl.tune import tune

        tune("image-classification", [*run_flags(images, out), *test, "--num_train_epochs", "2"],
             prog="hftl tune")  # fmt: skip


def test_test_data_and_pushes_wait_for_the_final_model(images, tmp_path):
    from hftl.tune import tune

    flags = run_flags(images, tmp_path / "study")
    with pytest.raises(ConfigError, match="--do_predict applies to the final model.*--train_best"):
        tune("image-classification", [*flags, "--do_predict", "--test_dir", str(images / "validation")],
             prog="hftl tune")  # fmt: skip
    with pytest.raises(ConfigError, match="--strategies: unknown strategy 'ful'"):
        tune("image-classification", [*flags, "--strategies", "ful"], prog="hftl tune")


def test_a_recipe_tunes_with_the_tune_flag(images, tmp_path):
    from test_recipes import RECIPES

    from hftl.testing import load_script

    recipe = load_script(RECIPES / "image_classification.py")
    out = tmp_path / "study"
    results = recipe.main([*run_flags(images, out), "--tune", "--n_trials", "1", "--no_advise"])
    assert results["trials"] == {"complete": 1}
    assert (out / "best.yaml").is_file() and (out / "trials" / "trial-000").is_dir()


def test_a_budget_stops_the_study_and_the_strategy_is_searched_with_its_own_knobs(images, tmp_path):
    from hftl.strategies import STRATEGIES

    out = tmp_path / "study"
    main(["tune", "image-classification", *run_flags(images, out), "--no_advise",
          "--strategies", "feature_extraction", "full", "--budget_minutes", "0.001"])  # fmt: skip
    (trial,) = open_study(out).trials  # the budget was spent by the first trial
    strategy = trial.params["strategy"]
    knobs = set(STRATEGIES.get(strategy).knobs)
    assert set(trial.params) == {"strategy", "learning_rate", "weight_decay", *knobs}
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["strategy"] == strategy == trial_config(out, 0)["strategy"]


def test_a_trial_stopped_by_ctrl_c_fails_and_its_values_are_queued_again(
    images, tmp_path, monkeypatch
):
    import hftl.tune
    from hftl.tune import tune

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hftl.tune, "run_task", interrupted)
    out = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        tune("image-classification", [*run_flags(images, out), "--n_trials", "2", "--no_advise"],
             prog="hftl tune")  # fmt: skip
    stopped, queued = open_study(out).trials
    assert stopped.state.name == "FAIL" and queued.state.name == "WAITING"
    # optuna keeps a queued trial's values as its fixed params until it is asked for
    assert queued.system_attrs["fixed_params"] == stopped.params
    assert queued.user_attrs["retry_of"] == stopped.number
