"""Downloads that resume and verify, and tar extraction that refuses unsafe members.

:func:`download` fetches ``http(s)://`` or ``file://`` URLs into ``<dest>.part`` and resumes
a partial file where it stopped (an HTTP ``Range`` request; a server that ignores it sends
the whole file again, which is written from the start). The finished file is checked
against an MD5 or SHA-256 digest before it takes its final name; a mismatch removes the
download and raises :class:`ChecksumError` naming the file and both digests.

:func:`safe_extract` unpacks a tar archive (any compression ``tarfile`` reads) after
checking every member: absolute names, ``..`` components, links that leave the target
folder and device or FIFO members are refused with :class:`UnsafeArchiveError`, before
anything is written.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from voiceprint.data.corpus import CorpusError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(CorpusError):
    """A download that could not be completed; the message names the URL."""


class ChecksumError(DownloadError):
    """A downloaded or present file whose digest is not the expected one."""


class UnsafeArchiveError(CorpusError):
    """An archive member that would be written outside the target folder."""


def _algorithm(checksum: str) -> tuple[str, str]:
    """``"md5:<hex>"``, ``"sha256:<hex>"`` or a bare hex digest (by its length)."""
    name, _, digest = checksum.rpartition(":")
    digest = digest.strip().lower()
    name = name.lower() or {32: "md5", 64: "sha256"}.get(len(digest), "")
    if name not in ("md5", "sha256") or len(digest) != {"md5": 32, "sha256": 64}[name]:
        raise ValueError(f"checksum {checksum!r} is neither an MD5 nor a SHA-256 hex digest")
    return name, digest


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, checksum: str | None) -> None:
    """Raise ChecksumError when ``path``'s digest is not ``checksum`` (None: no check)."""
    if checksum is None:
        return
    algorithm, expected = _algorithm(checksum)
    got = file_digest(path, algorithm)
    if got != expected:
        raise ChecksumError(f"{path}: {algorithm} is {got}, expected {expected}")


def download(
    url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest``, resuming ``<dest>.part``; verify ``checksum`` if given.

    A ``dest`` that is already there is verified and kept. Returns ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        verify(dest, checksum)
        log.info("%s is already there", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        _copy_local(url, part, offset, progress)
    elif scheme in ("http", "https"):
        _fetch_http(url, part, offset, progress, timeout)
    else:
        raise DownloadError(f"{url}: only http://, https:// and file:// URLs are fetched")
    try:
        verify(part, checksum)
    except ChecksumError as err:
        part.unlink()
        raise ChecksumError(
            f"{err} (downloaded from {url}; the download was removed, run again to fetch it anew)"
        ) from None
    part.replace(dest)
    return dest


def _copy_local(url: str, part: Path, offset: int, progress: bool) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"{url}: {source} does not exist")
    total = source.stat().st_size
    if offset > total:
        offset = 0  # a partial file longer than the source is not a prefix of it
    with source.open("rb") as src, part.open("r+b" if offset else "wb") as out:
        src.seek(offset)
        out.seek(offset)
        out.truncate()
        _pump(src, out, offset, total, part.name, progress)


def _fetch_http(url: str, part: Path, offset: int, progress: bool, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "voiceprint"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left past the partial file: it is complete
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: {getattr(err, 'reason', err)}") from err
    with response:
        resumed = offset and response.status == 206
        if offset and not resumed:
            log.info("%s ignores range requests: downloading it from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with part.open("ab" if resumed else "wb") as out:
            try:
                _pump(response, out, offset, total, part.name, progress)
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(
                    f"{url}: download interrupted at {out.tell()} bytes ({err}); run again "
                    f"to resume from {part}"
                ) from err
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume from {part}"
        )


def _pump(src, out, offset: int, total: int | None, name: str, progress: bool) -> None:  # noqa: ANN001
    with tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=name, disable=not progress
    ) as bar:
        for block in iter(lambda: src.read(CHUNK), b""):
            out.write(block)
            bar.update(len(block))


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse members that would land outside the target folder (before writing any)."""
    for member in members:
        name = PurePosixPath(member.name)
        where = f"{archive}: member {member.name!r}"
        if member.name.startswith(("/", "\\")) or name.is_absolute() or ":" in name.parts[0]:
            raise UnsafeArchiveError(f"{where} has an absolute path; refusing to extract")
        if ".." in name.parts:
            raise UnsafeArchiveError(f"{where} climbs out with '..'; refusing to extract")
        if member.islnk() or member.issym():
            target = PurePosixPath(member.linkname)
            base = PurePosixPath() if member.islnk() else name.parent
            if target.is_absolute() or ".." in (base / target).parts:
                raise UnsafeArchiveError(
                    f"{where} links to {member.linkname!r} outside the archive; refusing"
                )
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{where} is a device or FIFO; refusing to extract")


def list_members(archive: Path) -> list[tarfile.TarInfo]:
    """The members of a tar archive; a missing or broken one raises CorpusError naming it."""
    if not archive.is_file():
        raise CorpusError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive) as tar:
            return tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CorpusError(f"{archive}: not a readable tar archive, or truncated ({err})") from err


def safe_extract(archive: str | Path, dest: str | Path) -> list[tarfile.TarInfo]:
    """Extract ``archive`` into ``dest`` after :func:`check_members`; returns the members.

    The archive is read once: its member list, then the extraction.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise CorpusError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(archive, members)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: a second guard
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; check_members has run
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CorpusError(f"{archive}: not a readable tar archive, or truncated ({err})") from err
    return members


def move_into(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``, replacing what a killed earlier run left there."""
    if dest.is_dir():
        shutil.rmtree(dest)
    elif dest.exists():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dest)
