"""Model cards rendered from real (tiny) runs of every strategy: metadata, training story, figures."""

import json
import re

import pytest
from huggingface_hub import ModelCard
from test_recipes import SENTIMENT_LABELS, run_sentiment

from hftl.cards import CardError, render_card
from hftl.cli import main as cli
from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

RUNS = {
    "feature_extraction": ["--strategy", "feature_extraction"],
    "partial": ["--strategy", "partial", "--num_trainable_layers", "1"],
    "full": ["--strategy", "full", "--layer_decay", "0.5", "--head_lr_multiplier", "4"],
    "gradual": ["--strategy", "gradual", "--unfreeze_every", "2", "--unfreeze_unit", "step"],
    "lora": ["--strategy", "lora", "--lora_r", "4"],
    "scratch": ["--strategy", "full", "--from_scratch", "true"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cards")
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 96, labels=SENTIMENT_LABELS, seed=0)
    write_toy_reviews_csv(root / "validation.csv", 30, labels=SENTIMENT_LABELS, seed=1)
    for name, flags in RUNS.items():
        run_sentiment(root, root / name, *flags, "--num_train_epochs", "2", "--logging_steps", "2",
                      "--weight_decay", "0.01", "--early_stopping_patience", "0")  # fmt: skip
    return root


def layer_rows(card_text: str) -> dict[str, tuple[str, str]]:
    """part -> (trained, peak lr) from the card's layer table."""
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| [\d,]+ \| ([^|]+) \| ([^|]+) \|$", card_text, re.M)
    return {part.strip(): (trained.strip(), lr.strip()) for _, part, trained, lr in rows}


@pytest.mark.parametrize("name", list(RUNS))
def test_card_metadata_parses_and_holds_the_runs_metrics(runs, name):
    card = ModelCard((runs / name / "README.md").read_text())
    report = json.loads((runs / name / "eval_report.json").read_text())
    meta = card.data.to_dict()
    strategy = "full" if name == "scratch" else name
    assert f"strategy-{strategy}" in meta["tags"] and "hftl" in meta["tags"]
    assert meta["pipeline_tag"] == "text-classification"
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "validation.csv"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy": round(report["accuracy"], 4), "f1": round(report["f1"], 4)}
    assert "base_model" not in meta  # a local base has no Hub id to claim
    for label in SENTIMENT_LABELS:
        assert f"| `{label}` |" in card.text  # per-class table
    assert "(confusion_matrix.png)" in card.text and "(training_curves.png)" in card.text
    assert (runs / name / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "training wall time | " in card.text and " s |" in card.text


def test_feature_extraction_card_says_only_the_head_trained(runs):
    text = (runs / "feature_extraction" / "README.md").read_text()
    rows = layer_rows(text)
    assert rows["head"][0] == "yes"
    assert all(rows[part][0] == "no" and rows[part][1] == "-" for part in rows if part != "head")
    assert "pretrained backbone stayed frozen" in text


def test_partial_card_names_the_trained_blocks(runs):
    rows = layer_rows((runs / "partial" / "README.md").read_text())
    assert [rows[p][0] for p in ("embeddings / stem", "block 1", "block 2", "head")] == [
        "no",
        "no",
        "yes",
        "yes",
    ]


def test_full_card_shows_the_llrd_learning_rates(runs):
    text = (runs / "full" / "README.md").read_text()
    rows = layer_rows(text)
    lrs = [float(rows[p][1]) for p in ("embeddings / stem", "block 1", "block 2", "head")]
    base = json.loads((runs / "full" / "run_info.json").read_text())["training"]["learning_rate"]
    assert lrs == pytest.approx([base * 0.5**3, base * 0.5**2, base * 0.5, base * 4], rel=1e-2)
    assert "Layer-wise learning-rate decay 0.5" in text and "4.0x the base rate" in text
    assert "weight decay 0.01" in text


def test_gradual_card_states_the_schedule(runs):
    text = (runs / "gradual" / "README.md").read_text()
    assert "one more block every 2 step(s), top-down" in text
    assert all(trained == "yes" for trained, _ in layer_rows(text).values())  # all open at the end


def test_lora_card_gives_rank_and_targets(runs):
    text = (runs / "lora" / "README.md").read_text()
    info = json.loads((runs / "lora" / "run_info.json").read_text())
    assert info["training"]["lora"]["target_modules"]
    lora = info["training"]["lora"]
    assert (
        f"rank 4, alpha 16, dropout {lora['dropout']}, on `{'`, `'.join(lora['target_modules'])}`"
        in text
    )
    assert "merged into the weights" in text
    rows = layer_rows(text)
    assert rows["block 1"][0].startswith("yes (")  # only the adapters of a block train


def test_scratch_card_claims_no_transfer(runs):
    card = ModelCard((runs / "scratch" / "README.md").read_text())
    assert "from-scratch" in card.data.tags
    assert "Trained from scratch" in card.text


def test_card_command_renders_for_a_repo_id(runs, capsys):
    assert cli(["card", str(runs / "partial"), "--repo_id", "org/name", "--license", "mit"]) == 0
    text = (runs / "partial" / "README.md").read_text()
    assert 'pipeline("text-classification", model="org/name")' in text
    assert ModelCard(text).data.license == "mit"
    assert cli(["card", str(runs)]) == 2
    assert "missing run_info.json" in capsys.readouterr().err


def test_render_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(CardError, match="is this the output of a finished hftl run"):
        render_card(tmp_path)
