"""YAML + command-line configuration, its errors, and the `hftl` command."""

import pytest
from conftest import build

from hftl import ConfigError, ModelArguments, TransferTrainingArguments, parse_config
from hftl.cli import main as hftl_main

BASE = "output_dir: {out}\nreport_to: none\nuse_cpu: true\n"


def _yaml(tmp_path, body, name="run.yaml"):
    path = tmp_path / name
    path.write_text(BASE.format(out=tmp_path / "out") + body)
    return path


def test_yaml_supplies_values_and_the_command_line_overrides_them(tmp_path):
    path = _yaml(
        tmp_path, "strategy: full\nlayer_decay: 0.8\nlearning_rate: 1e-4\nnum_train_epochs: 3\n"
    )
    (args,) = parse_config(
        [TransferTrainingArguments], ["--config", str(path), "--layer_decay", "0.5"]
    )
    assert (args.strategy, args.layer_decay, args.learning_rate, args.num_train_epochs) == (
        "full",
        0.5,
        1e-4,
        3,
    )
    (positional,) = parse_config([TransferTrainingArguments], [str(path)])
    assert positional.layer_decay == 0.8


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = _yaml(tmp_path, "layer_decy: 0.8\n")
    with pytest.raises(
        ConfigError, match=r"run\.yaml: unknown key 'layer_decy' \(did you mean 'layer_decay'\?\)"
    ):
        parse_config([TransferTrainingArguments], ["--config", str(path)])


def test_wrong_value_type_names_file_and_key(tmp_path):
    path = _yaml(tmp_path, "learning_rate: fast\n")
    with pytest.raises(
        ConfigError, match=r"run\.yaml: key 'learning_rate': .*invalid float value: 'fast'"
    ):
        parse_config([TransferTrainingArguments], ["--config", str(path)])
    path = _yaml(tmp_path, "strategy: lorax\n")
    with pytest.raises(ConfigError, match=r"key 'strategy'.*invalid choice"):
        parse_config([TransferTrainingArguments], ["--config", str(path)])


@pytest.mark.parametrize(
    "body,message",
    [
        ("layer_decay: 1.5\n", r"layer_decay must be in \(0, 1\]"),
        ("layer_decay: 0\n", r"layer_decay must be in \(0, 1\]"),
        ("head_lr_multiplier: -1\n", "head_lr_multiplier must be > 0"),
        ("strategy: partial\n", "strategy=partial needs num_trainable_layers"),
        ("strategy: gradual\nunfreeze_every: 0\n", "unfreeze_every must be >= 1"),
    ],
)
def test_invalid_combinations_fail_at_parse_time(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        parse_config([TransferTrainingArguments], ["--config", str(_yaml(tmp_path, body))])


def test_too_many_trainable_layers_for_the_model_fails_at_parse_time(tmp_path):
    model_dir = tmp_path / "tiny-bert"
    build("bert", layers=3).save_pretrained(model_dir)
    path = _yaml(
        tmp_path, f"model_name_or_path: {model_dir}\nstrategy: partial\nnum_trainable_layers: 4\n"
    )
    with pytest.raises(
        ConfigError, match=r"num_trainable_layers=4 but .*tiny-bert has 3 blocks: use 0\.\.3"
    ):
        parse_config([ModelArguments, TransferTrainingArguments], ["--config", str(path)])
    model_args, train_args = parse_config(
        [ModelArguments, TransferTrainingArguments],
        ["--config", str(path), "--num_trainable_layers", "3"],
    )
    assert train_args.num_trainable_layers == 3 and model_args.model_name_or_path == str(model_dir)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file; .*vit_base_lora"):
        parse_config([TransferTrainingArguments], ["--config", str(tmp_path / "nope.yaml")])


def test_the_readme_configs_resolve_to_the_installed_ones(tmp_path, monkeypatch):
    """Outside the checkout, `--config recipes/configs/X.yaml` and `--config X` read the config
    installed with hftl; a file of that name in the current directory wins."""
    from hftl.config import shipped_configs
    from hftl.run import parse_run_config

    monkeypatch.chdir(tmp_path)
    assert "lora_r: 16" in shipped_configs()["vit_base_lora"].read_text()
    for value in ("recipes/configs/vit_base_lora.yaml", "vit_base_lora", "vit_base_lora.yaml"):
        model_args, *_, train_args, _ = parse_run_config(
            "image-classification", ["--config", value]
        )
        assert train_args.strategy == "lora" and train_args.lora_r == 16, value
        assert model_args.model_name_or_path == "google/vit-base-patch16-224-in21k"
    (tmp_path / "vit_base_lora.yaml").write_text(
        "model_name_or_path: mine\nstrategy: full\noutput_dir: out\n"
    )
    model_args, *_, train_args, _ = parse_run_config(
        "image-classification", ["--config", "vit_base_lora.yaml"]
    )
    assert (model_args.model_name_or_path, train_args.strategy) == ("mine", "full")
    with pytest.raises(ConfigError, match="no such file"):  # another folder is not hftl's
        parse_run_config("image-classification", ["--config", "elsewhere/vit_base_lora.yaml"])


def test_hftl_configs_prints_paths_and_copies_them_to_edit(tmp_path, monkeypatch, capsys):
    from hftl.config import ACCELERATE_CONFIGS, shipped_configs

    monkeypatch.chdir(tmp_path)  # outside the checkout: the installed configs are found
    runs, topologies = shipped_configs(), shipped_configs(ACCELERATE_CONFIGS)
    for value, expected in (("recipes/configs/vit_base_lora.yaml", runs["vit_base_lora"]),
                            ("vit_base_lora", runs["vit_base_lora"]),
                            ("multi_gpu", topologies["multi_gpu"]),
                            ("recipes/accelerate/cpu_2proc.yaml", topologies["cpu_2proc"])):  # fmt: skip
        assert hftl_main(["configs", "--path", value]) == 0
        assert capsys.readouterr().out.strip() == str(expected), value
    assert hftl_main(["configs", "--path", "nope"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert hftl_main(["configs", "--copy", "mine"]) == 0
    copied = sorted(p.name for p in (tmp_path / "mine" / "configs").iterdir())
    assert copied == sorted(p.name for p in runs.values())
    assert (tmp_path / "mine" / "accelerate" / "multi_gpu.yaml").read_text() == (
        topologies["multi_gpu"].read_text()
    )
    assert hftl_main(["configs", "--copy", "mine"]) == 2  # nothing is overwritten
    assert "exists; give a new DIR" in capsys.readouterr().err


def test_hftl_groups_prints_the_table_for_the_strategy(tmp_path, capsys):
    from hftl.testing import save_tiny_text_checkpoint

    save_tiny_text_checkpoint(tmp_path / "bert", "bert")
    code = hftl_main(
        [
            "groups",
            "--model_name_or_path",
            str(tmp_path / "bert"),
            "--strategy",
            "partial",
            "--num_trainable_layers",
            "1",
            "--layer_decay",
            "0.5",
            "--learning_rate",
            "1e-3",
            "--report_to",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    table = out.split("parameter groups:")[1].strip().splitlines()
    depths = {int(row.split()[0]) for row in table[1:-1]}
    assert depths == {2, 3}  # block 1 and the embeddings are frozen and left out
    assert "0.0005" in out  # the top block: 1e-3 * 0.5


def test_hftl_reports_config_errors_in_one_line(tmp_path, capsys):
    path = _yaml(tmp_path, "strategy: full\nlayer_decay: 0.8\nbogus_key: 1\n")
    code = hftl_main(["groups", "--model_name_or_path", "any/model", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "unknown key 'bogus_key'" in err and "Traceback" not in err


def test_a_bare_flag_means_true_for_optional_bools_too(tmp_path):
    from hftl.run import parse_run_config

    base = ["--model_name_or_path", "m", "--train_dir", "d", "--output_dir", str(tmp_path)]
    cases = {(): (None, None), ("--augmentation",): (True, None),
             ("--augmentation", "false", "--channels_last"): (False, True)}  # fmt: skip
    for flags, expected in cases.items():
        _, _, images, training, _ = parse_run_config("image-classification", [*base, *flags])
        assert (images.augmentation, training.channels_last) == expected, flags


def test_a_launch_configs_precision_is_the_runs_default_and_flags_still_decide(
    tmp_path, monkeypatch
):
    """`accelerate launch` with `mixed_precision: bf16` trains in bf16 whatever --bf16 says, and
    DeepSpeed refuses TrainingArguments that disagree: the launch's precision is --bf16's default."""
    from hftl.run import parse_run_config

    base = ["--model_name_or_path", "m", "--train_dir", "d", "--output_dir", str(tmp_path),
            "--use_cpu", "true"]  # fmt: skip

    def precision(*flags):
        training = parse_run_config("image-classification", [*base, *flags])[3]
        return training.bf16, training.fp16

    assert precision() == (False, False)  # not launched: full precision
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert precision() == (True, False)
    assert precision("--bf16", "false") == (False, False)  # said on the command line: kept
    config = tmp_path / "run.yaml"
    config.write_text("bf16: false\n")
    assert precision("--config", str(config)) == (False, False)  # said in the YAML: kept
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert precision()[1] is True
