"""Pushing a finished run to the Hugging Face Hub, with its card.

    hftl push out/sentiment --repo_id me/minilm-sentiment [--private] [--revision BRANCH]

What is pushed loads without hftl: the transformers model directory (safetensors, config with
``id2label``, tokenizer / image processor), timm-named weights for timm models (``hf-hub:``), the
LoRA adapter (PEFT) or merged weights, the card and its images, the run's config and metrics.

The token comes from where huggingface_hub looks (``HF_TOKEN``, ``hf auth login``) or ``--token``;
it is never logged, and a file that contains it is refused before anything is uploaded. Transient
failures (connection errors, 429, 5xx) are retried with exponential backoff; re-pushing an
unchanged run makes no new commit (huggingface_hub skips files whose content the Hub already has).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hftl.cards import CardError, write_card
from hftl.errors import first_line

logger = logging.getLogger(__name__)

# Never uploaded: Trainer's pickled arguments (they can hold hub_token), checkpoints, TensorBoard
# runs, and private files (Trainer's own push skips "_*" too).
# wise_ft/: the two end points of a WiSE-FT mix, each a full copy of the weights
IGNORE_PATTERNS = ["training_args.bin", "checkpoint-*", "checkpoint-*/**", "runs/**", "wise_ft/**",
                   "_*", ".*"]  # fmt: skip
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class PushError(RuntimeError):
    """A push that did not complete; the local output is untouched."""


def push_run(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    license: str | None = None,
    retries: int = 4,
    backoff: float = 2.0,
    run_info: dict | None = None,
) -> str:
    """Write the card into ``output_dir`` and upload the run to ``repo_id``; returns the commit URL.

    ``run_info``: the finished run's facts, when the caller (the end of a recipe) has them and
    has just written the card for ``repo_id``; the card is then not written again.

    Raises:
        PushError: with one line saying what failed and that the local output is intact.
        CardError: ``output_dir`` is not a finished hftl run.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    output = Path(output_dir)
    if run_info is None:
        write_card(output, repo_id, license=license)  # a CardError before touching the network
        run_info = json.loads((output / "run_info.json").read_text())
    api = HfApi(token=token)
    secret = token or api.token or _stored_token()
    files = _files_to_push(output)
    if secret:
        _refuse_files_with(secret, output, files)
    message = commit_message or "Upload hftl run"

    def attempt():
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo.repo_id, branch=revision, exist_ok=True)
        return api.create_commit(
            repo_id=repo.repo_id,
            operations=_operations(output, files, run_info),
            revision=revision,
            commit_message=message,
        )

    for number in range(1, retries + 2):
        try:
            info = attempt()
            break
        except HfHubHTTPError as error:
            status = getattr(error.response, "status_code", None)
            reason = _redact(first_line(error), secret)
            if status in (401, 403):
                raise PushError(
                    f"pushing {output} to {repo_id}: not authorised ({status}): set HF_TOKEN or run "
                    f"`hf auth login` with a token that can write to {repo_id.split('/')[0]}; the local "
                    "output is intact"
                ) from None
            if status not in RETRY_STATUS or number > retries:
                raise PushError(
                    f"pushing {output} to {repo_id} failed after {number} attempt(s): {reason}; the "
                    f"local output is intact, rerun `hftl push {output} --repo_id {repo_id}`"
                ) from None
            wait = backoff * 2 ** (number - 1)
        except Exception as error:
            if not _is_network_error(error):
                raise
            reason = _redact(first_line(error), secret)
            if number > retries:
                raise PushError(
                    f"pushing {output} to {repo_id} failed after {number} attempt(s): {reason}; the "
                    f"local output is intact, rerun `hftl push {output} --repo_id {repo_id}`"
                ) from None
            wait = backoff * 2 ** (number - 1)
        logger.warning(
            "push attempt %d/%d failed (%s); retrying in %.0f s", number, retries + 1, reason, wait
        )
        time.sleep(wait)
    logger.info("pushed %s to %s (%s)", output, repo_id, info.commit_url)
    return info.commit_url


def push_at_end(trainer, repo_id: str, run_info: dict) -> str:
    """End of a recipe under ``--push_to_hub`` (main process): push the run, whose card for
    ``repo_id`` is written, with the Trainer's Hub settings."""
    args = trainer.args
    pending = getattr(trainer, "push_in_progress", None)
    if pending is not None:  # an intermediate push (hub_strategy) still uploading
        pending.wait_until_done()
    return push_run(
        args.output_dir,
        repo_id,
        private=args.hub_private_repo,
        revision=args.hub_revision,
        token=args.hub_token,
        commit_message="End of training (hftl)",
        run_info=run_info,
    )


def _operations(output: Path, files: list[Path], info: dict) -> list:
    """One upload per file; a LoRA adapter trained from a local copy of a Hub model (an hftl
    asset) names the Hub id as its base in the pushed adapter_config.json, so PEFT finds it."""
    from huggingface_hub import CommitOperationAdd

    hub_base = info["base_model"].get("hub_id")
    operations = []
    for path in files:
        content: str | bytes = str(path)
        if path.name == "adapter_config.json" and hub_base:
            adapter = json.loads(path.read_text())
            if Path(str(adapter.get("base_model_name_or_path"))).exists():
                adapter["base_model_name_or_path"] = hub_base
                content = (json.dumps(adapter, indent=2, sort_keys=True) + "\n").encode()
        operations.append(
            CommitOperationAdd(
                path_in_repo=path.relative_to(output).as_posix(), path_or_fileobj=content
            )
        )
    return operations


def _files_to_push(output: Path) -> list[Path]:
    from huggingface_hub.utils import filter_repo_objects

    relative = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    return [output / p for p in filter_repo_objects(relative, ignore_patterns=IGNORE_PATTERNS)]


def _refuse_files_with(secret: str, output: Path, files: list[Path]) -> None:
    needle = secret.encode()
    for path in files:
        with open(path, "rb") as handle:
            previous = b""
            while chunk := handle.read(1 << 20):
                if needle in previous[-len(needle) :] + chunk:
                    raise PushError(
                        f"{path} contains your Hub token; nothing was pushed. Remove the token from "
                        f"that file (or delete it) and push again"
                    )
                previous = chunk


def _is_network_error(error: Exception) -> bool:
    """Connection refused / reset, DNS, timeouts, whichever HTTP library huggingface_hub uses."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, OSError) or bool(
        names & {"TransportError", "ConnectionError", "TimeoutException", "NetworkError"}
    )


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


__all__ = ["CardError", "PushError", "push_at_end", "push_run"]
