"""The text head reads the feature the checkpoint was trained for: sentence-transformers' pooling
read from the checkpoint, hftl's pooled head on the pretrained encoder (weights intact), the
cached path equal to the uncached one, and a saved model that loads without hftl."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from hftl.config import ModelArguments
from hftl.errors import ConfigError
from hftl.models import load_classifier
from hftl.tasks.pooled_text import PooledTextClassifier, pool
from hftl.tasks.text_classification import TextClassificationArguments
from hftl.testing import save_tiny_text_checkpoint, tiny_pooled_bert, toy_reviews

LABELS = ["negative", "positive"]


def write_pooling(directory, **modes):
    """The two files a sentence-transformers checkpoint carries about its pooling."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]  # fmt: skip
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir()
    settings = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False, **modes}  # fmt: skip
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(settings))


def load(path, pooling="auto"):
    return load_classifier(
        ModelArguments(str(path)), "text-classification", LABELS,
        TextClassificationArguments(pooling=pooling),
    )  # fmt: skip


def test_pool_reads_only_the_real_tokens():
    hidden = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 5.0]]

    model = tiny_pooled_bert().eval()  # padding a text changes nothing it predicts
    ids = torch.tensor([[5, 9, 11, 7]])
    padded = torch.tensor([[5, 9, 11, 7, 0, 0, 0]])
    with torch.no_grad():
        alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
        with_pads = model(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(alone, with_pads)


def test_auto_pooling_follows_the_checkpoint_and_keeps_its_encoder_weights(tmp_path):
    plain = save_tiny_text_checkpoint(tmp_path / "plain", "bert", num_labels=3)
    assert isinstance(load(plain), BertForSequenceClassification)  # no pooling files: [CLS]

    sentence = save_tiny_text_checkpoint(tmp_path / "sentence", "bert", num_labels=3)
    write_pooling(sentence, pooling_mode_mean_tokens=True)
    model = load(sentence)
    assert isinstance(model, PooledTextClassifier)
    assert model.config.pooling == "mean" and model.config.id2label == dict(enumerate(LABELS))
    saved = load_file(sentence / "model.safetensors")
    encoder = {n: p for n, p in model.named_parameters() if n.startswith("bert.")}
    assert encoder and all(torch.equal(p, saved[n]) for n, p in encoder.items())
    assert not any(".pooler." in n for n in encoder)  # the head pools the tokens itself
    assert model.classifier.weight.shape == (2, 32)

    assert load(sentence, pooling="max").config.pooling == "max"
    assert isinstance(load(sentence, pooling="cls"), BertForSequenceClassification)
    assert load(plain, pooling="mean").config.pooling == "mean"


def test_a_pooling_hftl_does_not_offer_is_refused_naming_the_file(tmp_path):
    path = save_tiny_text_checkpoint(tmp_path / "weighted", "bert")
    write_pooling(path, pooling_mode_weightedmean_tokens=True)
    with pytest.raises(ConfigError, match=r"1_Pooling/config.json says .* weightedmean pooling"):
        load(path)
    assert load(path, pooling="mean").config.pooling == "mean"  # an explicit choice still works
    with pytest.raises(ValueError, match="--pooling first: choose one of auto, cls, mean, max"):
        TextClassificationArguments(pooling="first")


def test_pooled_model_trains_cached_and_loads_without_hftl(tmp_path):
    from test_recipes import run_sentiment

    from hftl.feature_cache import unwrap
    from hftl.testing import write_toy_reviews_csv

    checkpoint = save_tiny_text_checkpoint(tmp_path / "sentence", "bert")
    write_pooling(checkpoint, pooling_mode_mean_tokens=True)
    write_toy_reviews_csv(tmp_path / "train.csv", 60, labels=LABELS, seed=0)
    write_toy_reviews_csv(tmp_path / "validation.csv", 20, labels=LABELS, seed=1)
    flags = ["--model_name_or_path", str(checkpoint), "--strategy", "feature_extraction",
             "--num_train_epochs", "2", "--feature_cache_dir", str(tmp_path / "features")]  # fmt: skip
    _, trainer = run_sentiment(tmp_path, tmp_path / "out", *flags)
    assert trainer.feature_cache["used"] is True  # the pooled features were cached
    model = unwrap(trainer.model).eval()
    assert model.config.pooling == "mean"
    first = load_file(checkpoint / "model.safetensors")["bert.encoder.layer.0.output.dense.weight"]
    assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, first)  # frozen

    out = tmp_path / "out"
    assert (out / "pooled_text.py").is_file()
    info = json.loads((out / "run_info.json").read_text())
    assert info["custom_code"] is True and info["head"] == {"pooling": "mean"}
    card = (out / "README.md").read_text()
    assert 'pipeline("text-classification", model=' in card and "trust_remote_code=True" in card

    texts = [row["text"] for row in toy_reviews(6, labels=LABELS, seed=9)]
    with torch.no_grad():
        from transformers import AutoTokenizer

        inputs = AutoTokenizer.from_pretrained(out)(texts, return_tensors="pt", padding=True)
        scores = model(**inputs).logits.softmax(-1)
    # a fresh interpreter without hftl: plain pipeline() refuses, trust_remote_code loads it
    code = f"""
import json, sys, transformers
transformers.logging.set_verbosity_error()
from transformers import pipeline
try:
    pipeline("text-classification", model={str(out)!r})
    refused = False
except ValueError as error:
    refused = "trust_remote_code" in str(error)
classify = pipeline("text-classification", model={str(out)!r}, trust_remote_code=True)
open("result.json", "w").write(json.dumps({{"refused": refused, "hftl": "hftl" in sys.modules,
                                           "out": classify({texts!r}, top_k=None)}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads((tmp_path / "result.json").read_text())
    assert got["refused"] is True and got["hftl"] is False
    for row, expected in zip(got["out"], scores.tolist(), strict=True):
        by_label = {p["label"]: p["score"] for p in row}
        assert [by_label[label] for label in LABELS] == pytest.approx(expected, abs=1e-5)
