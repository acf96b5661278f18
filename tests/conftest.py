"""Shared test set-up: everything offline, tiny models, free ports for DDP runs."""

import logging
import os
import socket
import tempfile

# Before transformers / huggingface_hub are imported anywhere: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# hftl's own cache (assets, cached features) never lands in the user's cache during tests.
os.environ.setdefault("HFTL_CACHE", tempfile.mkdtemp(prefix="hftl-test-cache-"))

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


def depths_in_forward_order(model, inputs: dict) -> list[int]:
    """Run ``model`` once; the depth of each parameter-owning module, in the order modules ran.

    Also asserts that no module's own parameters straddle two depths.
    """
    from hftl import layer_ids

    depths = layer_ids(model)
    module_depth = {}
    for prefix, module in model.named_modules():
        own = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
        if own:
            module_depth[module] = {depths[n] for n in own}
            assert len(module_depth[module]) == 1, (
                f"{prefix} straddles depths {module_depth[module]}"
            )
    executed = []
    handles = [
        m.register_forward_pre_hook(lambda mod, _args: executed.append(mod)) for m in module_depth
    ]
    model.eval()
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [next(iter(module_depth[m])) for m in executed]


@pytest.fixture(scope="session")
def _hub_server():
    from hub_server import FakeHub

    server = FakeHub(token="hf_tEsT" + os.urandom(8).hex())
    yield server
    server.close()


@pytest.fixture
def hub(_hub_server, monkeypatch, tmp_path):
    """The loopback Hub (tests/hub_server.py), with huggingface_hub pointed at it for this test.

    The stack reads the endpoint and offline mode from ``huggingface_hub.constants`` (and the
    module-level ``HfApi`` behind ``huggingface_hub.file_exists`` & co. keeps its own); the
    downloads cache is this test's own, and ``HF_TOKEN`` is the server's (unique) token.
    """
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api
    import transformers.utils.hub

    _hub_server.reset()
    monkeypatch.setattr(constants, "ENDPOINT", _hub_server.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        _hub_server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(
        huggingface_hub.hf_api.api, "endpoint", _hub_server.url
    )  # file_exists & co.
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    monkeypatch.setenv("HF_TOKEN", _hub_server.token)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return _hub_server


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def clear(self):
        self.records.clear()


@pytest.fixture
def hftl_logs():
    """The records of hftl's logger, whatever a program did to its propagation."""
    logger = logging.getLogger("hftl")
    level, handler = logger.level, _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
