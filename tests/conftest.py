"""Shared test set-up: everything offline, tiny models, free ports for DDP runs."""

import os
import socket

# Before transformers / huggingface_hub are imported anywhere: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from hftl.testing import TINY_MODELS, dummy_inputs  # noqa: E402

ALL_MODELS = sorted(TINY_MODELS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=ALL_MODELS)
def model_kind(request) -> str:
    return request.param


def build(kind: str, **kwargs):
    torch.manual_seed(0)
    return TINY_MODELS[kind](**kwargs)


def loss_of(model, kind: str, batch_size: int = 4, seed: int = 0) -> torch.Tensor:
    inputs = dummy_inputs(kind, batch_size=batch_size, seed=seed)
    labels = torch.arange(batch_size) % model.config.num_labels
    return model(**inputs, labels=labels).loss
