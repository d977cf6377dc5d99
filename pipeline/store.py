"""The tracking store: where it is, and whether it can take a run (no mlflow here).

A bad store (unknown scheme, malformed URI, an SQLite file or folder that cannot be written)
is a user error found before any run opens (``check_local_store``), not a traceback from deep
inside MLflow after the fit. Everything here is cheap: ``import mlflow`` costs about 1.8 s,
so ``tracking.check_store`` imports it only to ask an http(s) server whether it answers.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

# MLflow's HTTP client retries 7 times with backoff factor 2 and a 120 s timeout: minutes
# before an unreachable server is reported. These bound one request to about 3 attempts
# (sleeps 0 s, 2-3 s) and a silent server to 10 s an attempt; a user's own setting wins.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
FIX = ("use a writable store: tracking.uri=sqlite:////abs/path/mlflow.db on the command line "
       "(or MLFLOW_TRACKING_URI=...)")
_SQL = ("sqlite", "postgresql", "mysql", "mssql")
_OTHER = {"http", "https", "file", "databricks", "databricks-uc", "uc"}


class StoreError(ValueError):
    """The tracking store cannot be used; the message names the URI and the fix."""


def http_limits() -> None:
    """Bound MLflow's HTTP retries and timeout (``os.environ.setdefault``: the user's wins)."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


def uri_scheme(uri: str) -> str:
    """The scheme of ``uri`` in lower case ('' for a plain path); StoreError if unknown."""
    if not isinstance(uri, str) or not uri.strip():
        raise StoreError(f"tracking store {uri!r}: empty URI; {FIX}")
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        return ""
    base = scheme.split("+", 1)[0]
    if scheme in _OTHER or scheme == "" or base in _SQL or scheme in _plugin_schemes():
        return scheme
    raise StoreError(f"tracking store {uri}: unknown scheme '{scheme}:' (MLflow stores are "
                     f"sqlite:///, http(s)://, postgresql://, mysql://, mssql:// or a folder); "
                     f"{FIX}, or http://host:port for a tracking server")


def _plugin_schemes() -> set[str]:
    """Schemes that installed MLflow plugins register (read from metadata, no import)."""
    from importlib.metadata import entry_points

    try:
        return {ep.name.lower() for ep in entry_points(group="mlflow.tracking_store")}
    except Exception:  # broken metadata must not break the check
        return set()


def check_local_store(uri: str) -> str:
    """Check what can be checked without mlflow; return the scheme.

    SQLite: the database file (if it exists) must be a readable-writable SQLite file and its
    folder must exist or be creatable and let us create files (SQLite writes a journal next to
    the database; we write a lock file). The check writes nothing that stays: it creates and
    removes one temporary file (or folder) where the store would go.
    A folder store (``file:`` or a plain path): the folder must be creatable and writable.
    http(s): the URI must name a host; reachability needs mlflow (``tracking.check_store``).
    Other stores (databases, Databricks, plugins): only the scheme is checked.

    Raises
    ------
    StoreError
        Naming the URI, what is wrong, and the fix.
    """
    scheme = uri_scheme(uri)
    parts = urllib.parse.urlsplit(uri)
    if scheme.split("+", 1)[0] == "sqlite":
        if not uri.split(":", 1)[1].startswith("///") or parts.netloc:
            raise StoreError(f"tracking store {uri}: malformed SQLite URI (an absolute path "
                             f"needs four slashes: sqlite:////abs/path/mlflow.db); {FIX}")
        path = urllib.parse.unquote(uri.split(":", 1)[1][3:].split("?", 1)[0])
        if not path or path == ":memory:":
            raise StoreError(f"tracking store {uri}: no database file (an in-memory store "
                             f"keeps nothing); {FIX}")
        _check_db_file(uri, Path(path))
    elif scheme in ("http", "https"):
        try:
            parts.port  # noqa: B018  (raises on a non-numeric port)
        except ValueError as err:
            raise StoreError(f"tracking store {uri}: malformed URI ({err}); use "
                             f"http://host:port of a running MLflow server, or {FIX}") from None
        if not parts.hostname:
            raise StoreError(f"tracking store {uri}: no host in the URI; use http://host:port "
                             f"of a running MLflow server, or {FIX}")
    elif scheme in ("", "file"):
        path = urllib.parse.unquote(parts.path) if scheme == "file" else uri
        _check_folder(uri, Path(path), as_dir=True)
    return scheme


def server_error(uri: str, text: str | None, waited: float) -> StoreError:
    """What to tell about a server that did not answer (``text`` None) or answered an error.

    A connection failure (refused, unknown host, timed out: MLflow's message carries the
    ``[Errno ...]`` or "Max retries exceeded") means nothing listens there; anything else is
    the server's own answer (a 401 or 404: the URI or the credentials are wrong).
    """
    text = text or ""
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if not text or errno or "Max retries exceeded" in text or "timed out" in text:
        why = errno.group(1).strip() if errno else f"no answer within {waited:g} s"
        return StoreError(f"tracking server {uri} is not reachable ({why}): start it (mlflow "
                          f"server --host 127.0.0.1 --port PORT) or point tracking.uri=... (or "
                          f"MLFLOW_TRACKING_URI) at a running one; without a server, {FIX}")
    first = text.strip().splitlines()[0][:300]
    return StoreError(f"tracking server {uri} answered with an error ({first}): check the URI "
                      f"and your credentials (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/"
                      f"PASSWORD); without a server, {FIX}")


def _check_db_file(uri: str, db: Path) -> None:
    if db.is_dir():
        raise StoreError(f"tracking store {uri} is not writable: {db} is a folder, not a "
                         f"database file; {FIX}")
    if db.exists():
        try:
            fd = os.open(db, os.O_RDWR)
            try:
                head = os.read(fd, 16)
            finally:
                os.close(fd)
        except OSError as err:
            raise StoreError(f"tracking store {uri} is not writable: cannot open {db} for "
                             f"writing ({err.strerror}); {FIX}") from None
        if head and head != b"SQLite format 3\x00":
            raise StoreError(f"tracking store {uri}: {db} is not an SQLite database; {FIX}")
    _check_folder(uri, db.parent, as_dir=False)


def _check_folder(uri: str, folder: Path, as_dir: bool) -> None:
    """``folder`` exists and takes new files, or its nearest existing parent takes folders."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise StoreError(f"tracking store {uri} is not writable: {existing} is a broken "
                             f"link; {FIX}")
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"tracking store {uri} is not writable: {existing} is a file, not a "
                         f"folder; {FIX}")
    try:
        if existing == folder and not as_dir:
            with tempfile.TemporaryFile(dir=existing, prefix=".mlflow-check-"):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".mlflow-check-"))
    except OSError as err:
        what = "create files in" if existing == folder else f"create {folder} under"
        raise StoreError(f"tracking store {uri} is not writable: cannot {what} {existing} "
                         f"({err.strerror}); {FIX}") from None


def project_root() -> Path:
    """``$DVC_ROOT`` when DVC runs us (queued experiments run in a temp copy), else the repo."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd().resolve()


def resolve_uri(uri: str | None) -> str:
    """Tracking URI: the config's, else $MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{project_root() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]  # relative path: make it absolute against the root
        return f"sqlite:///{(project_root() / rel).resolve()}"
    return uri


def artifact_location(uri: str, experiment: str = "") -> str | None:
    """Artifacts next to a SQLite store (``<dir>/mlruns/<experiment>``); servers decide."""
    if uri.startswith("sqlite:///"):
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).strip("._")
        path = Path(uri[len("sqlite:///"):]).parent / "mlruns" / folder
        return path.resolve().as_uri()
    return None


def ui_command(uri: str) -> str:
    """What the user types to browse the runs."""
    default = f"sqlite:///{project_root() / 'mlflow.db'}"
    if uri == default:
        return f"cd {project_root()} && mlflow ui"
    if uri.startswith("http"):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive file lock next to a SQLite store (processes racing to create and
    migrate a fresh store crash); a no-op for other stores."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri[len("sqlite:///"):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
