"""Pushing runs to the Hub and loading them back by repo id, through the loopback Hub in hub_server.py.

The real huggingface_hub client talks to it over a socket; transformers, PEFT and timm load from it.
"""

import json
import logging

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from test_recipes import SENTIMENT_LABELS, run_images, run_sentiment

from hftl.cli import main as cli
from hftl.hub import PushError, push_run
from hftl.testing import (
    save_tiny_image_checkpoint,
    save_tiny_text_checkpoint,
    toy_reviews,
    write_toy_image_folder,
    write_toy_reviews_csv,
)

TEXTS = [row["text"] for row in toy_reviews(6, labels=SENTIMENT_LABELS, seed=5)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    save_tiny_text_checkpoint(root / "bert", "bert", num_labels=2)
    write_toy_reviews_csv(root / "train.csv", 150, labels=SENTIMENT_LABELS, seed=0)
    write_toy_reviews_csv(root / "validation.csv", 45, labels=SENTIMENT_LABELS, seed=1)
    write_toy_image_folder(root / "train", per_class=12, seed=0)
    write_toy_image_folder(root / "validation", per_class=4, seed=1)
    save_tiny_image_checkpoint(root / "timm-resnet", "timm-resnet", num_labels=2)
    return root


@pytest.fixture(scope="module")
def text_run(setup):
    run_sentiment(setup, setup / "text-run", "--strategy", "full", "--layer_decay", "0.8",
                  "--num_train_epochs", "2", "--logging_steps", "4", "--eval_strategy", "epoch")  # fmt: skip
    return setup / "text-run"


def predict_text(model_ref, **kwargs):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model_ref, **kwargs)
    return [(p["label"], round(p["score"], 5)) for p in classifier(TEXTS)]


def snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_pushed_run_loads_by_repo_id_and_predicts_the_same(hub, text_run):
    local = predict_text(str(text_run))
    url = push_run(text_run, "tester/tiny-sentiment")
    assert url.startswith(f"{hub.url}/tester/tiny-sentiment/commit/")
    assert predict_text("tester/tiny-sentiment") == local
    assert {label for label, _ in local} <= set(SENTIMENT_LABELS)  # names, not LABEL_0

    files = hub.repos["tester/tiny-sentiment"].files("main")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "run_config.yaml",
                 "eval_report.json", "confusion_matrix.png", "training_curves.png"):  # fmt: skip
        assert name in files, name
    assert "training_args.bin" not in files  # pickled arguments can hold the token


def test_pushed_card_metadata_holds_the_runs_metrics(hub, text_run):
    push_run(text_run, "tester/card-check")
    card = ModelCard(hub.file("tester/card-check", "README.md").decode())
    report = json.loads((text_run / "eval_report.json").read_text())
    metadata = card.data.to_dict()
    assert {"hftl", "strategy-full"} <= set(metadata["tags"])
    assert metadata["pipeline_tag"] == "text-classification"
    metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": round(report["accuracy"], 4), "f1": round(report["f1"], 4)}
    assert 'pipeline("text-classification", model="tester/card-check")' in card.text


def test_repush_of_an_unchanged_run_makes_no_commit(hub, text_run):
    first = push_run(text_run, "tester/twice")
    commits = len(hub.repos["tester/twice"].branches["main"])
    second = push_run(text_run, "tester/twice")
    assert second == first
    assert len(hub.repos["tester/twice"].branches["main"]) == commits


def test_a_server_error_mid_push_is_retried(hub, text_run, caplog):
    hub.fail("/commit/", status=503, times=1)
    with caplog.at_level(logging.WARNING, logger="hftl"):
        push_run(text_run, "tester/flaky", backoff=0.01)
    assert "model.safetensors" in hub.repos["tester/flaky"].files("main")
    assert any("retrying" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)


def test_a_persistent_server_error_is_reported_and_leaves_the_output(hub, text_run):
    before = snapshot(text_run)
    hub.fail("/commit/", status=500, times=10)
    with pytest.raises(
        PushError, match=r"failed after 3 attempt\(s\): .*500.*local output is intact"
    ):
        push_run(text_run, "tester/down", retries=2, backoff=0.01)
    after = snapshot(text_run)
    # Everything the run wrote is still there, unchanged; only the card now names the repo id.
    assert {k: v for k, v in after.items() if k != "README.md"} == {
        k: v for k, v in before.items() if k != "README.md"
    }
    assert "tester/down" in after["README.md"].decode()


def test_a_bad_token_is_an_authorisation_error(hub, text_run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PushError, match="not authorised .*HF_TOKEN"):
        push_run(text_run, "tester/denied", backoff=0.01)
    assert "tester/denied" not in hub.repos


def test_a_file_holding_the_token_is_refused_before_any_upload(hub, text_run):
    notes = text_run / "notes.txt"
    notes.write_text(f"token={hub.token}\n")
    try:
        with pytest.raises(
            PushError, match="notes.txt contains your Hub token; nothing was pushed"
        ):
            push_run(text_run, "tester/leaky")
    finally:
        notes.unlink()
    assert not hub.repos


def test_push_to_a_branch_and_load_that_revision(hub, text_run):
    push_run(text_run, "tester/branched", revision="experiment", private=True)
    repo = hub.repos["tester/branched"]
    assert repo.private
    assert "model.safetensors" in repo.files("experiment")
    assert "model.safetensors" not in repo.files("main")
    assert predict_text("tester/branched", revision="experiment") == predict_text(str(text_run))


def test_recipe_push_to_hub_keeps_the_token_out_of_files_and_logs(hub, setup, capsys, caplog):
    out = setup / "pushed-by-recipe"
    with caplog.at_level(logging.DEBUG):
        run_sentiment(setup, out, "--strategy", "partial", "--num_trainable_layers", "1",
                      "--num_train_epochs", "1", "--push_to_hub", "true",
                      "--hub_model_id", "tester/from-recipe", "--hub_token", hub.token)  # fmt: skip
    files = hub.repos["tester/from-recipe"].files("main")
    assert "hftl" in files["README.md"].decode()  # hftl's card, not Trainer's
    assert "strategy-partial" in files["README.md"].decode()
    for name, content in files.items():
        assert hub.token.encode() not in content, name
    printed = capsys.readouterr()
    assert hub.token not in printed.out + printed.err
    assert all(hub.token not in r.getMessage() for r in caplog.records)
    for path in out.rglob("*"):  # training_args.bin included: Trainer pickles its arguments
        if path.is_file():
            assert hub.token.encode() not in path.read_bytes(), path
    assert predict_text("tester/from-recipe") == predict_text(str(out))


def test_timm_run_loads_with_timm_create_model_from_the_hub(hub, setup):
    import timm
    from transformers import AutoModelForImageClassification

    out = setup / "timm-run"
    run_images(setup, "timm-resnet", out, "--strategy", "partial", "--num_trainable_layers", "2",
               "--num_train_epochs", "1")  # fmt: skip
    push_run(out, "tester/tiny-timm")
    pixels = torch.randn(2, 3, 32, 32)
    local = AutoModelForImageClassification.from_pretrained(out).eval()
    from_hub = AutoModelForImageClassification.from_pretrained("tester/tiny-timm").eval()
    native = timm.create_model("hf-hub:tester/tiny-timm", pretrained=True).eval()
    with torch.no_grad():
        expected = local(pixel_values=pixels).logits
        assert torch.allclose(from_hub(pixel_values=pixels).logits, expected, atol=1e-6)
        assert torch.allclose(native(pixels), expected, atol=1e-5)
    card = hub.file("tester/tiny-timm", "README.md").decode()
    assert 'timm.create_model("hf-hub:tester/tiny-timm", pretrained=True)' in card


def test_lora_adapter_loads_with_peft_from_the_hub(hub, setup):
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoTokenizer

    out = setup / "lora-run"
    run_sentiment(setup, out, "--strategy", "lora", "--lora_r", "4", "--merge_lora", "false",
                  "--num_train_epochs", "1")  # fmt: skip
    push_run(out, "tester/tiny-lora")
    files = hub.repos["tester/tiny-lora"].files("main")
    assert "adapter_config.json" in files and "adapter_model.safetensors" in files
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer(TEXTS, return_tensors="pt", padding=True)
    # As the card says: the tiny base is a 2-label classifier, this task has 3 labels.
    labels = dict(num_labels=3, id2label=dict(enumerate(SENTIMENT_LABELS)),
                  label2id={label: i for i, label in enumerate(SENTIMENT_LABELS)}, ignore_mismatched_sizes=True)  # fmt: skip
    local = AutoPeftModelForSequenceClassification.from_pretrained(out, **labels).eval()
    remote = AutoPeftModelForSequenceClassification.from_pretrained(
        "tester/tiny-lora", **labels
    ).eval()
    assert isinstance(remote, PeftModel)
    with torch.no_grad():
        assert torch.allclose(remote(**inputs).logits, local(**inputs).logits, atol=1e-6)
    card = files["README.md"].decode()
    assert "library_name: peft" in card
    assert 'AutoPeftModelForSequenceClassification.from_pretrained(\n    "tester/tiny-lora"' in card
    assert json.dumps(list(SENTIMENT_LABELS)) in card


def test_push_command(hub, text_run, capsys):
    assert (
        cli(["push", str(text_run), "--repo_id", "tester/by-cli", "--commit_message", "first"]) == 0
    )
    assert capsys.readouterr().out.strip().startswith(f"{hub.url}/tester/by-cli/commit/")
    assert hub.repos["tester/by-cli"].branches["main"][-1][1] == "first"
    assert cli(["push", str(text_run.parent / "missing"), "--repo_id", "tester/x"]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_card_yaml_is_what_the_hub_reads(text_run):
    text = (text_run / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["model-index"][0]["results"][0]["task"]["type"] == "text-classification"


def test_pushed_adapter_names_the_hub_id_of_a_local_base(tmp_path):
    from hftl.hub import _operations

    hub_id = "sentence-transformers/all-MiniLM-L6-v2"  # what hftl:minilm is a copy of
    info = {"base_model": {"hub_id": hub_id}}
    adapter = tmp_path / "adapter_config.json"
    adapter.write_text(json.dumps({"base_model_name_or_path": str(tmp_path), "r": 4}))
    (operation,) = _operations(tmp_path, [adapter], info)
    pushed = json.loads(operation.path_or_fileobj)
    assert pushed == {"base_model_name_or_path": hub_id, "r": 4}
    assert json.loads(adapter.read_text())["base_model_name_or_path"] == str(tmp_path)  # local kept


def test_an_unreachable_hub_is_reported_after_retries(hub, text_run, monkeypatch):
    import huggingface_hub.constants as constants
    from conftest import free_port

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody there
    with pytest.raises(
        PushError, match=r"failed after 2 attempt\(s\): .*refused.*local output is intact"
    ):
        push_run(text_run, "tester/offline", retries=1, backoff=0.01)
    assert (text_run / "model.safetensors").exists()
