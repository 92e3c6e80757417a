"""Opening the store: engine, SQLite pragmas, migrations on start, the single-instance
lock, and clear errors when the store is missing, removed or locked.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed outbox row survives a crash
of the process and of the machine) and a busy timeout; PostgreSQL goes through psycopg 3.
Both get the same schema from the same Alembic migrations.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tlswatch.errors import TlswatchError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: PostgreSQL advisory lock id held by the running daemon ("tlswa" in ASCII)
PG_LOCK_ID = 0x746C737761


class StoreError(TlswatchError):
    """The store cannot be used (missing, removed, locked, unreachable); the message says
    which and what to do."""


@dataclass(frozen=True)
class _FileIdentity:
    dev: int
    ino: int


def normalise_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """An open store. ``create=False`` (the read-only CLI commands) refuses to create a new
    SQLite file, so a typo in ``-c`` does not silently show an empty inventory."""

    def __init__(self, url: str, *, create: bool = True, busy_timeout: float = 5.0) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.path: Path | None = None
        self._identity: _FileIdentity | None = None
        self._lock_fd: int | None = None
        self._lock_conn: Any = None
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise StoreError("an in-memory SQLite store would lose everything on restart")
            self.path = Path(parsed.database)
            if not create and not self.path.exists():
                raise StoreError(
                    f"store {self.path} does not exist: has `tlswatch serve` run with this config?"
                )
            if create and not self.path.parent.is_dir():
                raise StoreError(f"store directory {self.path.parent} does not exist")
            kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        elif self.dialect == "postgresql":
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 10}
        else:
            raise StoreError(f"unsupported store {self.dialect!r}: use sqlite or postgresql")
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout))
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- lifecycle --------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``)."""
        # imported here: only `serve` migrates; the read-only commands skip Alembic (~0.1 s)
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.translate_errors("migrating"), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        self._remember_file()

    def check_schema(self) -> None:
        """For read-only commands: the store exists and has been migrated."""
        with self.translate_errors("reading"):
            names = set(inspect(self.engine).get_table_names())
        if "outbox" not in names:
            raise StoreError(
                f"{self.describe()} has no tlswatch tables: run `tlswatch serve` first"
            )
        self._remember_file()

    def close(self) -> None:
        self.release_lock()
        self.engine.dispose()

    def describe(self) -> str:
        if self.path is not None:
            return f"store {self.path}"
        u = make_url(self.url)
        return f"store postgresql://{u.host or ''}:{u.port or 5432}/{u.database}"

    # -- single instance --------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """One daemon per store: a second ``serve`` fails fast instead of double-probing,
        and the running one may treat every half-sent notification as its own crash's."""
        if self.path is not None:
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip()
                os.close(fd)
                raise StoreError(
                    f"another tlswatch serve is using {self.describe()} (lock {lock_path} held"
                    + (f" by pid {holder})" if holder else ")")
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._lock_fd = fd
        else:
            conn = self.engine.connect()
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": PG_LOCK_ID}
            ).scalar()
            conn.commit()
            if not got:
                conn.close()
                raise StoreError(f"another tlswatch serve is using {self.describe()}")
            self._lock_conn = conn

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._lock_conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._lock_conn.close()
            self._lock_conn = None

    # -- health -----------------------------------------------------------------------------

    def _remember_file(self) -> None:
        if self.path is not None and self._identity is None:
            st = self.path.stat()
            self._identity = _FileIdentity(st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Raise when the SQLite file was deleted or replaced under us: SQLite would keep
        writing into the deleted inode and every later write would be lost silently."""
        if self.path is None or self._identity is None:
            return
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise StoreError(
                f"{self.describe()} was removed while tlswatch was running; stopping so that "
                "nothing more is written into a deleted file (restore it or restart to start a "
                "new store)"
            ) from None
        if (st.st_dev, st.st_ino) != (self._identity.dev, self._identity.ino):
            raise StoreError(
                f"{self.describe()} was replaced by another file while tlswatch was running; "
                "stopping (restart to use the new file)"
            )

    @contextlib.contextmanager
    def translate_errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise StoreError(self._explain(exc, doing)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.describe()}: error while {doing}: {exc}") from exc

    def _explain(self, exc: OperationalError, doing: str) -> str:
        msg = str(exc.orig) if exc.orig is not None else str(exc)
        if "locked" in msg or "busy" in msg:
            return (
                f"{self.describe()} is locked by another process ({msg}) while {doing}; "
                "the transaction was rolled back, nothing was written"
            )
        if "readonly" in msg or "read-only" in msg:
            return f"{self.describe()} is read-only ({msg}) while {doing}"
        if "unable to open" in msg:
            return f"cannot open {self.describe()} ({msg})"
        return f"{self.describe()}: {msg.strip()} (while {doing})"

    @contextlib.contextmanager
    def transaction(self, doing: str = "writing") -> Iterator[Session]:
        """One unit of work: committed on success, rolled back and translated on error."""
        self.check_file()
        with self.translate_errors(doing), self.sessions() as session, session.begin():
            yield session


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    return on_connect
