"""Backups: consistent copies of the live database, kept on a rotation, and one zip of a whole
FTAPP_HOME (database, uploads, adapters, exports) that a user can take away and restore.

The database is copied with SQLite's online backup API, never with a file copy: a file copy
of a WAL database taken while the worker or the web app writes can miss the -wal file or catch
it half-written. Everything this module writes goes to a hidden temporary name in the target's
folder first and is renamed into place at the end (the approach of `ftapp.files.atomic_write`,
which writes text and so can't be used for a database or a zip), so a crash never leaves a
half-written backup or export under its real name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath

from ftapp.errors import NotFound, ValidationError
from ftapp.settings import Settings
from ftapp.timeutil import utc_now

logger = logging.getLogger(__name__)

KEEP_BACKUPS = 5
# Rotation deletes only files with exactly this shape, so nothing a user puts in backups/ by
# hand (a copy they want to keep, a README) is ever removed.
BACKUP_NAME = re.compile(r"^ftapp-\d{8}T\d{6}Z\.db$")
BACKUP_TIME_FORMAT = "%Y%m%dT%H%M%SZ"

MANIFEST_NAME = "MANIFEST.json"
EXPORT_FORMAT = "ftapp-export"
EXPORT_VERSION = 1
DB_NAME = "ftapp.db"
RESTORE_HOWTO = (
    "To restore: stop ftapp, unzip this file into an empty FTAPP_HOME folder "
    "(or call ftapp.backup.restore_home), then start ftapp with FTAPP_HOME pointing at it."
)
# SQLite keeps these beside a database; a temporary copy that failed halfway may have them.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def backup_database(db_path: Path, target: Path) -> Path:
    """Copy the live database at `db_path` to `target` and return `target`.

    The copy is one read transaction of the online backup API, so it is a consistent snapshot
    even while other processes write (WAL lets them go on meanwhile). The copy is switched to
    a rollback journal so it is one self-contained file.
    """
    db_path = Path(db_path)
    target = Path(target)
    if not db_path.is_file():
        raise NotFound(f"No database to back up at {db_path}")
    partial = _partial_file(target)
    try:
        try:
            # mode=rw: opening must never create an empty database if the file just vanished.
            source = sqlite3.connect(db_path.resolve().as_uri() + "?mode=rw", uri=True)
        except sqlite3.Error as exc:
            raise NotFound(f"Can't open the database at {db_path}: {exc}") from None
        try:
            dest = sqlite3.connect(str(partial))
            try:
                # pages=-1: the whole database in one step, hence one consistent read.
                source.backup(dest, pages=-1)
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
        except sqlite3.DatabaseError as exc:
            raise ValidationError(
                f"Couldn't back up {db_path} to the folder {target.parent}: {exc}"
            ) from None
        finally:
            source.close()
        os.replace(partial, target)
    except OSError as exc:
        raise _unwritable(target.parent, exc) from None
    finally:
        _remove_partial(partial)
    return target


def write_periodic_backup(settings: Settings, now: datetime | None = None) -> Path:
    """Back up the database to backups/ftapp-<UTC time>.db and delete the older ones beyond
    the newest KEEP_BACKUPS. Returns the new file."""
    now = datetime.now(UTC) if now is None else now
    # A naive time is taken to be UTC already: the name says Z.
    stamp = (now.astimezone(UTC) if now.tzinfo else now).strftime(BACKUP_TIME_FORMAT)
    target = settings.backups_dir / f"ftapp-{stamp}.db"
    backup_database(settings.db_path, target)
    _rotate_backups(settings.backups_dir, keep=target)
    return target


def _rotate_backups(folder: Path, keep: Path) -> None:
    """Delete all but the newest KEEP_BACKUPS backups (by the time in their names). The one
    just written is always kept, even if the clock went back and it sorts as the oldest."""
    others = sorted(
        path for path in folder.iterdir() if BACKUP_NAME.match(path.name) and path != keep
    )
    for old in others[: max(len(others) - (KEEP_BACKUPS - 1), 0)]:
        old.unlink(missing_ok=True)
        logger.info("Deleted old backup %s", old)


class BackupThread(threading.Thread):
    """Writes a periodic backup every `interval_seconds` until `stop()`.

    A failed backup (disk full, database locked for too long) is logged and the next one is
    tried on schedule: backups must never take the app down.
    """

    def __init__(self, settings: Settings, interval_seconds: float | None = None) -> None:
        super().__init__(name="ftapp-backup", daemon=True)
        if interval_seconds is None:
            interval_seconds = settings.backup_minutes * 60
        if interval_seconds <= 0:
            raise ValidationError(
                f"Backup interval must be above 0 seconds, got {interval_seconds} "
                "(FTAPP_BACKUP_MINUTES=0 turns backups off: don't start the thread)"
            )
        self.settings = settings
        self.interval_seconds = interval_seconds
        # An Event, not sleep(): stop() wakes the wait at once. Not named _stop: Thread has one.
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            try:
                path = write_periodic_backup(self.settings)
            except Exception:
                logger.exception("Periodic backup of %s failed", self.settings.db_path)
            else:
                logger.info("Backed up the database to %s", path)

    def stop(self) -> None:
        """Ask the thread to end; it does at once unless a backup is being written."""
        self._stopping.set()


def export_everything(settings: Settings, out_path: Path) -> Path:
    """Write one zip of all a user would lose with the machine: a snapshot of the database,
    uploads/, adapters/ and exports/, and MANIFEST.json saying what is inside and how to
    restore. models/ (re-prepared from the package), backups/ and logs/ are left out.

    Symlinks that lead out of FTAPP_HOME are skipped and listed in the manifest. Returns
    `out_path`.
    """
    out_path = Path(out_path)
    home = settings.home.resolve()
    if not settings.db_path.is_file():
        raise NotFound(f"No database to export at {settings.db_path}")
    partial = _partial_file(out_path)
    # The zip itself may be written inside exports/: it must not pack itself.
    not_packed = {out_path.resolve(), partial.resolve()}
    try:
        # The snapshot goes in the home (same disk as the database, often bigger than /tmp),
        # whose top level is never walked below.
        with (
            tempfile.TemporaryDirectory(dir=settings.home, prefix=".export-") as tmp,
            zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            snapshot = backup_database(settings.db_path, Path(tmp) / DB_NAME)
            archive.write(snapshot, DB_NAME)
            parts = [{"name": DB_NAME, "files": 1, "bytes": snapshot.stat().st_size}]
            skipped: list[str] = []
            for folder in (settings.uploads_dir, settings.adapters_dir, settings.exports_dir):
                files, size = _pack_folder(archive, folder, home, not_packed, skipped)
                parts.append({"name": f"{folder.name}/", "files": files, "bytes": size})
            manifest = {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "created_at": utc_now(),
                "parts": parts,
                "skipped_outside_home": skipped,
                "restore": RESTORE_HOWTO,
            }
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, out_path)
    except OSError as exc:
        raise _unwritable(out_path.parent, exc) from None
    finally:
        partial.unlink(missing_ok=True)
    return out_path


def _pack_folder(
    archive: zipfile.ZipFile, folder: Path, home: Path, not_packed: set[Path], skipped: list[str]
) -> tuple[int, int]:
    """Add the regular files under `folder` with paths relative to the home; (files, bytes)."""
    files = size = 0
    if not folder.is_dir():
        return files, size
    # followlinks=False: a linked folder is never walked, so nothing outside the home is read
    # through one; linked files are checked one by one below.
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            relative = path.relative_to(folder.parent).as_posix()
            real = path.resolve()
            # Other processes' half-written files (ftapp.files.atomic_write) are not data yet.
            if real in not_packed or (name.startswith(".") and ".partial-" in name):
                continue
            if not real.is_relative_to(home):
                skipped.append(relative)
                logger.warning("Export skips %s: it links outside FTAPP_HOME to %s", path, real)
                continue
            if not real.is_file():  # sockets, fifos, dangling links
                continue
            archive.write(real, relative)
            files += 1
            size += real.stat().st_size
    return files, size


def restore_home(zip_path: Path, home: Path) -> None:
    """Unpack a zip made by `export_everything` into `home`, which must be empty or absent.

    Every member is checked before anything is written; the files are unpacked into a hidden
    folder inside `home` and moved into place only once all of them are out, so a bad zip
    leaves `home` as empty as it was.
    """
    zip_path = Path(zip_path)
    home = Path(home)
    if not zip_path.is_file():
        raise NotFound(f"No export file at {zip_path}")
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise ValidationError(
            f"Restore needs an empty folder, and {home} is not empty: "
            "stop ftapp and choose (or empty) another FTAPP_HOME"
        )
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationError(f"{zip_path} is not a zip file: {exc}") from None
    with archive:
        _check_export(archive, zip_path, home)
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=home, prefix=".restore-"))
        try:
            try:
                archive.extractall(staging)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ValidationError(f"Couldn't unpack {zip_path}: {exc}") from None
            for entry in staging.iterdir():
                os.replace(entry, home / entry.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _check_export(archive: zipfile.ZipFile, zip_path: Path, home: Path) -> None:
    """Refuse a zip that export_everything didn't make, or one with a member that would be
    written outside the home (an absolute path, `..`, a Windows drive)."""
    names = archive.namelist()
    if MANIFEST_NAME not in names:
        raise ValidationError(f"{zip_path} is not an ftapp export: it has no {MANIFEST_NAME}")
    try:
        manifest = json.loads(archive.read(MANIFEST_NAME))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise ValidationError(f"{zip_path}: {MANIFEST_NAME} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ValidationError(f"{zip_path} is not an ftapp export: its manifest has another format")
    root = home.resolve()
    for name in names:
        path = PurePosixPath(name)
        lands = (root / path).resolve()
        if (
            path.is_absolute()
            or ".." in path.parts
            or PureWindowsPath(name).drive
            or not lands.is_relative_to(root)
        ):
            raise ValidationError(
                f"{zip_path} has a member that would land outside {home}: {name!r}; "
                "nothing was restored"
            )


def _partial_file(target: Path) -> Path:
    """A new empty hidden file beside `target` to write into before the final rename."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-")
    except OSError as exc:
        raise _unwritable(target.parent, exc) from None
    os.close(handle)
    return Path(name)


def _unwritable(folder: Path, exc: OSError) -> ValidationError:
    return ValidationError(f"Can't write in the folder {folder}: {exc.strerror or exc}")


def _remove_partial(partial: Path) -> None:
    for suffix in ("", *SQLITE_SIDE_FILES):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
