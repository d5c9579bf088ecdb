"""Per-user history in PostgreSQL with pgvector: the backend for many users and many app servers.

Install with ``pip install 'langchain-rpo[postgres]'`` (psycopg 3, psycopg-pool, pgvector), point
it at any PostgreSQL 13+ with the ``vector`` extension (pgvector 0.8+ for ``hnsw=True``)::

    history = PostgresHistory("postgresql://app:secret@db.internal:5432/app", embeddings=emb)
    history.add_texts("alice", ["Announcing Rust 1.75.0"])
    history.search("alice", "new Rust version", k=4)

What it keeps (the same contract as the embedded FAISS store, :class:`HistoryBackend`):

- **Items keyed by** ``(user_id, item_id)`` in one table partitioned by ``HASH(user_id)``
  (16 partitions by default), so a user's search reads one partition.
- **Exact search by default**: the user's rows ordered by inner product with the normalised
  query (vectors are stored normalised, so that is cosine similarity): recall 1.0, like FAISS.
  ``hnsw=True`` adds an HNSW index and searches it with pgvector 0.8's iterative scans, for users
  with very long histories (approximate, faster there).
- **Isolation, twice**: every statement filters on the user id, bound as a parameter (no SQL is
  ever built from a user id, item id or text); and the table has a row-level-security policy,
  ``user_id = current_setting('rpo.user_id', true)``, which every transaction of this backend
  sets with ``set_config('rpo.user_id', <user>, true)``. Connect as a non-owner role (see
  :meth:`PostgresHistory.create_schema`'s ``grant_to``) and a bug that forgot the filter would
  still see one user's rows only.
- **Feedback events** (:class:`~langchain_rpo.feedback.FeedbackEvent`) in ``rpo_feedback``,
  keyed by ``(user_id, event_id)``, partitioned and row-level-secured like the items (schema
  version 2); ``forget`` deletes a user's items and events in one transaction.
- **A versioned schema** (``rpo_schema_version``) created and migrated by the package on first
  use, under a transaction-scoped advisory lock, so concurrent starts are safe and idempotent.
- **The embeddings model is recorded** (``rpo_meta``: identifier and width); a backend opened
  with another model is refused.
- **One transaction per call**: an add is all or nothing, even if its process is killed midway;
  concurrent writers (threads or processes) upsert in id order, so they cannot deadlock.
- **Reconnects**: pooled connections are checked before use, and reads are retried once on a
  connection error (a restarted server, a failover).

Strings PostgreSQL cannot store are refused up front with a ``ValueError``: besides the checks
every backend applies (:mod:`langchain_rpo.history_checks`), a NUL character in a user id, an
item id or a text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_rpo.feedback import FeedbackEvent, check_events, in_time_order
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord, embeddings_identifier
from langchain_rpo.history_checks import (
    check_add_call,
    check_k,
    check_no_nul,
    check_query,
    check_str_sequence,
    check_user_id,
    normalised_vectors,
)

try:
    import psycopg
    from pgvector.psycopg.vector import register_vector_info
    from psycopg import sql
    from psycopg.types import TypeInfo
    from psycopg.types.json import Json
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    # A ModuleNotFoundError naming the missing package, so callers (the `rpo history` command)
    # can tell "the extra is not installed" from any other import failure.
    raise ModuleNotFoundError(
        f"PostgresHistory needs psycopg 3, psycopg-pool and pgvector ({exc.name} is missing). "
        "Fix: pip install 'langchain-rpo[postgres]'.",
        name=exc.name,
    ) from exc

if TYPE_CHECKING:
    from psycopg.abc import Query

__all__ = ["DEFAULT_PARTITIONS", "SCHEMA_VERSION", "PostgresHistory"]

SCHEMA_VERSION = 2
"""The schema version this code writes and reads (``rpo_schema_version``).

1: the meta row and the items table. 2: the feedback events table (``rpo_feedback``).
"""
DEFAULT_PARTITIONS = 16
"""Hash partitions of the items table, fixed when the schema is created."""
USER_SETTING = "rpo.user_id"
"""The setting the row-level-security policy reads; set per transaction by the backend."""

# One key for every schema in a database: CREATE EXTENSION is per database, so two schemas
# created at once must not race on it either.
_MIGRATION_LOCK_KEY = 0x7270_6F5F_6869_7374  # "rpo_hist"
_PAGE = 500  # iter_items page size: bounded memory, few round trips
_T = TypeVar("_T")


def _as_list(vector: Any) -> list[float]:
    """A loaded ``vector`` as floats: pgvector >= 0.4 loads ``Vector`` objects, 0.3 arrays."""
    to_list = getattr(vector, "to_list", None)
    return [float(x) for x in (to_list() if to_list is not None else vector)]


class PostgresHistory(HistoryBackend):
    """Per-user history in PostgreSQL + pgvector; see the module docstring for the guarantees.

    Nothing connects until first use (a search, an add, :meth:`create_schema`), so constructing
    one is cheap and does not need the server to be up.

    Args:
        url: A libpq connection URL or DSN, for example
            ``"postgresql://user:pass@host:5432/db"``; options such as ``sslmode=require`` go in
            the query string.
        embeddings: The embeddings model; ``None`` uses the default all-MiniLM-L6-v2. It must be
            the model the schema was created with (its identifier and width are recorded).
        schema: The PostgreSQL schema (namespace) that holds the tables; several histories (one
            per embeddings model, say) can share a database under different schemas.
        partitions: Hash partitions of the items table, used when the schema is created (later
            the recorded number holds).
        hnsw: Search with an HNSW index (created on first use if missing) and iterative scans:
            approximate, for very long histories. ``False`` (default) searches exactly, even when
            another instance created the index.
        ef_search: ``hnsw.ef_search`` for HNSW searches (pgvector's default is 40).
        create: Create or migrate the schema on first use. With ``False`` a missing or outdated
            schema is an error (for app roles without DDL rights).
        min_size: Connections the pool keeps open.
        max_size: Connections the pool opens at most (per process; the sync and async pools
            count separately).
        timeout: Seconds to wait for a pooled connection before giving up.
        connection_kwargs: Extra arguments for every connection (``psycopg.connect``), for
            what a URL cannot say: ``{"prepare_threshold": None}`` behind PgBouncer < 1.21.

    Raises:
        ValueError: On an invalid ``schema`` or ``partitions`` (the URL is checked on first use).
    """

    def __init__(
        self,
        url: str,
        embeddings: Embeddings | None = None,
        *,
        schema: str = "rpo",
        partitions: int = DEFAULT_PARTITIONS,
        hnsw: bool = False,
        ef_search: int | None = None,
        create: bool = True,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 30.0,
        connection_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError(
                "url must be a PostgreSQL connection URL, for example "
                "'postgresql://user:pass@localhost:5432/db'."
            )
        if not isinstance(schema, str) or not schema or len(schema.encode("utf-8")) > 63:
            raise ValueError(f"schema must be a name of 1 to 63 bytes, got {schema!r}.")
        check_no_nul(schema, "schema")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an int of 1 or more, got {partitions!r}.")
        self._url = url
        self._embeddings = embeddings
        self._schema = schema
        self._partitions = partitions
        self._hnsw = bool(hnsw)
        self._ef_search = ef_search
        self._create = create
        self._connection_kwargs = dict(connection_kwargs or {})
        self._pool_args = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "kwargs": self._connection_kwargs,
        }
        self._dim: int | None = None
        self._width: int | None = None
        self._vector_info: TypeInfo | None = None
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._closed = False

        def table(name: str) -> sql.Identifier:
            return sql.Identifier(schema, name)

        self._items = table("rpo_items")
        self._feedback = table("rpo_feedback")
        self._meta = table("rpo_meta")
        self._versions = table("rpo_schema_version")

    def __repr__(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self._url) if "://" in self._url else {}
        where = f"{info.get('host', '?')}:{info.get('port', 5432)}/{info.get('dbname', '?')}"
        return f"{type(self).__name__}({where!r}, schema={self._schema!r}, hnsw={self._hnsw})"

    # ------------------------------------------------------------------ embeddings

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings model (the default one is resolved here, on first use)."""
        if self._embeddings is None:
            from langchain_rpo.embeddings import default_embeddings

            self._embeddings = default_embeddings()
        return self._embeddings

    @property
    def schema(self) -> str:
        """The PostgreSQL schema that holds this history's tables."""
        return self._schema

    @property
    def dim(self) -> int:
        """The vector width recorded in the schema (connects on first use)."""
        self._ready()
        assert self._dim is not None
        return self._dim

    def _embedding_width(self) -> int:
        """The embeddings model's width (one probe embedding, remembered)."""
        if self._width is None:
            from langchain_rpo.embeddings import SentenceTransformerEmbeddings

            if isinstance(self.embeddings, SentenceTransformerEmbeddings):
                self._width = self.embeddings.dimension
            else:
                self._width = len(self.embeddings.embed_query("dimension probe"))
        return self._width

    # ------------------------------------------------------------------ schema

    def create_schema(self, *, grant_to: str | None = None) -> None:
        """Create or migrate the schema (idempotent, safe under concurrent starts).

        Runs on first use anyway (unless ``create=False``); call it to set up ahead of time, or
        to grant an application role access. The role gets ``SELECT, INSERT, UPDATE, DELETE``
        on the items and read access to the schema's bookkeeping, and, not being the table's
        owner, is held to the row-level-security policy: it sees only the rows of the user
        named in ``rpo.user_id``, which this backend sets in every transaction.

        Args:
            grant_to: An existing role to grant the application's rights to.

        Raises:
            ValueError: When the schema records another embeddings model, or was written by a
                newer version of this package.
            psycopg.Error: When the server refuses (no rights to create the schema or the
                ``vector`` extension: run it once as the database owner).
        """
        self._ready()
        if grant_to is not None:
            check_no_nul(grant_to, "grant_to")
            with psycopg.connect(self._url, **self._connection_kwargs) as conn:
                self._grant(conn, grant_to)

    def _ready(self) -> ConnectionPool:
        """Set up on first use: the schema, the recorded model, the pool."""
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed; create a new one.")
            if self._pool is None:
                with psycopg.connect(self._url, **self._connection_kwargs) as conn:
                    self._setup(conn)
                    # The vector type's oid, fetched once: every pooled connection registers
                    # the adapter from it without a query of its own.
                    self._vector_info = TypeInfo.fetch(conn, "vector")
                if self._vector_info is None:
                    raise RuntimeError("The vector extension vanished during setup; try again.")
                self._pool = ConnectionPool(
                    self._url,
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
                    open=True,
                    name=f"rpo-{self._schema}",
                    **self._pool_args,  # type: ignore[arg-type]
                )
            return self._pool

    def _configure(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        register_vector_info(conn, self._vector_info)

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        """Migrate if needed, then read and check the recorded embeddings model."""
        version = self._current_version(conn)
        if version > SCHEMA_VERSION:
            raise self._newer_schema(version)
        missing_index = self._hnsw and not self._has_hnsw_index(conn)
        if version < SCHEMA_VERSION or missing_index:
            if not self._create:
                if version < SCHEMA_VERSION:
                    state = f"at version {version}" if version else "missing"
                    problem = f"Schema {self._schema!r} is {state}"
                else:
                    problem = f"Schema {self._schema!r} has no HNSW index (asked for by hnsw=True)"
                raise ValueError(
                    f"{problem}, and this PostgresHistory has create=False. Fix: run "
                    f"PostgresHistory(url, schema={self._schema!r}, hnsw={self._hnsw})"
                    ".create_schema() once as a role that may create tables (the owner)."
                )
            self._migrate(conn)
        row = conn.execute(sql.SQL("SELECT embeddings, dim FROM {}").format(self._meta)).fetchone()
        conn.commit()
        assert row is not None
        recorded_id, recorded_dim = row
        wanted_id = embeddings_identifier(self.embeddings)
        wanted_dim = self._embedding_width()
        if (recorded_id, recorded_dim) != (wanted_id, wanted_dim):
            raise ValueError(
                f"Schema {self._schema!r} holds vectors of embeddings {recorded_id!r} "
                f"(width {recorded_dim}), but this PostgresHistory was given {wanted_id!r} "
                f"(width {wanted_dim}); searches only mean something with the same model. Fix: "
                f"pass the embeddings the history was built with, or use another schema= for "
                "the new model and move the texts over with `rpo history export`/`import`."
            )
        self._dim = recorded_dim

    def _newer_schema(self, version: int) -> ValueError:
        return ValueError(
            f"Schema {self._schema!r} is at version {version}, written by a newer "
            f"langchain-rpo than this one (which knows up to {SCHEMA_VERSION}). Fix: "
            "upgrade langchain-rpo."
        )

    def _has_hnsw_index(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = 'rpo_items_hnsw'",
            (self._schema,),
        ).fetchone()
        conn.rollback()
        return row is not None

    def _current_version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, 'rpo_schema_version'))",
            (self._schema,),
        ).fetchone()
        if row is None or row[0] is None:
            conn.rollback()
            return 0
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(self._versions)
        ).fetchone()
        conn.rollback()
        return int(row[0]) if row else 0

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the migrations the schema lacks, in one transaction, under the advisory lock."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            has_vector = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if not has_vector:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version int PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._versions)
            )
            row = conn.execute(
                sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(self._versions)
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise self._newer_schema(version)
            if version < 1:
                self._migration_1(conn)
                conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (1)").format(self._versions))
            if version < 2:
                self._migration_2(conn)
                conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (2)").format(self._versions))
            if self._hnsw:
                # Created on the partitioned table: PostgreSQL builds one index per partition.
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_ip_ops)"
                    ).format(sql.Identifier("rpo_items_hnsw"), self._items)
                )

    def _create_partitions(
        self, conn: psycopg.Connection[Any], table: sql.Composable, name: str, partitions: int
    ) -> None:
        """The hash partitions ``{name}_p0...`` of a table partitioned by user."""
        for i in range(partitions):
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
                ).format(
                    sql.Identifier(self._schema, f"{name}_p{i}"),
                    table,
                    sql.Literal(partitions),
                    sql.Literal(i),
                )
            )

    @staticmethod
    def _isolate_users(conn: psycopg.Connection[Any], table: sql.Composable) -> None:
        """Row-level security: a role without BYPASSRLS sees only the rows of ``rpo.user_id``."""
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
        conn.execute(
            sql.SQL(
                "CREATE POLICY rpo_user_isolation ON {} "
                "USING (user_id = current_setting('rpo.user_id', true)) "
                "WITH CHECK (user_id = current_setting('rpo.user_id', true))"
            ).format(table)
        )

    def _migration_1(self, conn: psycopg.Connection[Any]) -> None:
        """Version 1: the meta row, the partitioned items table, the RLS policy."""
        dim = self._embedding_width()
        ident = embeddings_identifier(self.embeddings)
        seq = sql.Identifier(self._schema, "rpo_items_seq")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                "embeddings text NOT NULL, dim int NOT NULL, partitions int NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._meta)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} (embeddings, dim, partitions) VALUES (%s, %s, %s)").format(
                self._meta
            ),
            (ident, dim, self._partitions),
        )
        conn.execute(sql.SQL("CREATE SEQUENCE {}").format(seq))
        # json, not jsonb: json keeps the text as written, so metadata comes back exactly (key
        # order, 1e300 stays a float); nothing queries inside it.
        conn.execute(
            sql.SQL(
                "CREATE TABLE {items} ("
                " user_id text NOT NULL,"
                " item_id text NOT NULL,"
                " text text NOT NULL,"
                " metadata json NOT NULL,"
                " embedding vector({dim}) NOT NULL,"
                " seq bigint NOT NULL DEFAULT nextval({seq}),"
                " PRIMARY KEY (user_id, item_id)"
                ") PARTITION BY HASH (user_id)"
            ).format(
                items=self._items,
                dim=sql.Literal(dim),
                # nextval takes the sequence's name as text: the quoted, qualified name.
                seq=sql.Literal(seq.as_string(conn)),
            )
        )
        self._create_partitions(conn, self._items, "rpo_items", self._partitions)
        # Export order: per user, by insertion (seq); also serves count and forget.
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (user_id, seq)").format(
                sql.Identifier("rpo_items_user_seq"), self._items
            )
        )
        self._isolate_users(conn, self._items)

    def _migration_2(self, conn: psycopg.Connection[Any]) -> None:
        """Version 2: the feedback events table, partitioned and secured like the items."""
        row = conn.execute(sql.SQL("SELECT partitions FROM {}").format(self._meta)).fetchone()
        partitions = int(row[0]) if row else self._partitions  # the recorded number holds
        seq = sql.Identifier(self._schema, "rpo_items_seq")
        # The whole event as json (checked by FeedbackEvent on the way in and out); time is its
        # own column so that feedback() orders by it; seq (shared with the items) breaks ties
        # by insertion order.
        conn.execute(
            sql.SQL(
                "CREATE TABLE {feedback} ("
                " user_id text NOT NULL,"
                " event_id text NOT NULL,"
                " time timestamptz NOT NULL,"
                " event json NOT NULL,"
                " seq bigint NOT NULL DEFAULT nextval({seq}),"
                " PRIMARY KEY (user_id, event_id)"
                ") PARTITION BY HASH (user_id)"
            ).format(feedback=self._feedback, seq=sql.Literal(seq.as_string(conn)))
        )
        self._create_partitions(conn, self._feedback, "rpo_feedback", partitions)
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (user_id, time, seq)").format(
                sql.Identifier("rpo_feedback_user_time"), self._feedback
            )
        )
        self._isolate_users(conn, self._feedback)
        # An upgraded schema: the roles granted the items (create_schema(grant_to=...)) get the
        # events too, or their forget, which now deletes events, would be refused.
        grantees = conn.execute(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
            "WHERE table_schema = %s AND table_name = 'rpo_items' AND privilege_type = 'DELETE' "
            "AND grantee <> current_user",
            (self._schema,),
        ).fetchall()
        for (grantee,) in grantees:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                    self._feedback, who
                )
            )

    def _grant(self, conn: psycopg.Connection[Any], role: str) -> None:
        who = sql.Identifier(role)
        with conn.transaction():
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(self._schema), who)
            )
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {}, {} TO {}").format(
                    self._items, self._feedback, who
                )
            )
            conn.execute(
                sql.SQL("GRANT SELECT ON {}, {} TO {}").format(self._meta, self._versions, who)
            )
            conn.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(self._schema, "rpo_items_seq"), who
                )
            )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection pool; the async pool (of the ``a*`` methods) needs :meth:`aclose`.

        A closed history refuses further calls.
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    async def aclose(self) -> None:
        """Close both pools."""
        apool, self._apool = self._apool, None
        if apool is not None:
            await apool.close()
        self.close()

    def __enter__(self) -> PostgresHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> PostgresHistory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ statements

    @staticmethod
    def _user(user_id: object) -> str:
        user_id = check_user_id(user_id)
        check_no_nul(user_id, "user_id")
        return user_id

    def _upsert(self) -> Query:
        return sql.SQL(
            "INSERT INTO {} (user_id, item_id, text, metadata, embedding, seq) "
            "VALUES (%s, %s, %s, %s, %b, %s) ON CONFLICT (user_id, item_id) DO UPDATE SET "
            "text = excluded.text, metadata = excluded.metadata, embedding = excluded.embedding"
        ).format(self._items)  # a replaced item keeps its place (seq), as in the FAISS store

    def _seqs_query(self) -> Query:
        name = sql.Identifier(self._schema, "rpo_items_seq").as_string()
        return sql.SQL("SELECT nextval({}) AS s FROM generate_series(1, %s) ORDER BY s").format(
            sql.Literal(name)
        )

    @staticmethod
    def _numbered(rows: list[tuple[Any, ...]], seqs: list[tuple[int]]) -> list[tuple[Any, ...]]:
        """Give each row (its call position last) the seq of that position: insertion order."""
        return [(*row[:-1], seqs[row[-1]][0]) for row in rows]

    def _write(self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        seqs = conn.execute(self._seqs_query(), (len(rows),)).fetchall()
        conn.cursor().executemany(self._upsert(), self._numbered(rows, seqs))

    async def _awrite(
        self, conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]
    ) -> None:
        seqs = await (await conn.execute(self._seqs_query(), (len(rows),))).fetchall()
        await conn.cursor().executemany(self._upsert(), self._numbered(rows, seqs))

    @staticmethod
    def _prechecked(
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None,
        ids: Sequence[str] | None,
    ) -> tuple[str, list[str], list[dict[str, Any]], list[str]]:
        """Every backend's add checks, plus the NULs PostgreSQL text cannot hold."""
        user_id, text_list, metas, item_ids = check_add_call(user_id, texts, metadatas, ids)
        check_no_nul(user_id, "user_id")
        for name, values in (("texts", text_list), ("ids", item_ids)):
            for i, value in enumerate(values):
                check_no_nul(value, f"{name}[{i}]")
        return user_id, text_list, metas, item_ids

    def _checked_add(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None,
        ids: Sequence[str] | None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Check an add; return the ids in call order and the rows in id order."""
        user_id, texts, metas, item_ids = self._prechecked(user_id, texts, metadatas, ids)
        if not texts or len(embeddings) == 0:
            if texts or len(embeddings):
                raise ValueError(
                    f"Got {len(texts)} texts but {len(embeddings)} embeddings; pass one per text."
                )
            return [], []
        vectors = normalised_vectors(embeddings, self._dim, "embeddings[{i}]")
        if vectors.shape[0] != len(texts):
            raise ValueError(
                f"Got {len(texts)} texts but {vectors.shape[0]} embeddings; pass one per text."
            )
        rows = sorted(
            zip(item_ids, texts, metas, vectors, range(len(texts))),
            key=lambda row: row[0],  # one lock order for every writer: no deadlocks
        )
        return item_ids, [(user_id, i, t, Json(m), v, pos) for i, t, m, v, pos in rows]

    def _search_query(self, user_id: str, query: np.ndarray, k: int) -> tuple[Query, tuple]:
        if self._hnsw:
            # The index answers ORDER BY embedding <#> q; iterative scans keep looking until
            # k rows of this user are found (relaxed order: re-sorted below).
            statement = sql.SQL(
                "SELECT item_id, text, metadata, -(embedding <#> %b) AS score FROM {} "
                "WHERE user_id = %s ORDER BY embedding <#> %b LIMIT %s"
            ).format(self._items)
            return statement, (query, user_id, query, k)
        # An ORDER BY the HNSW index cannot serve: always the exact top k of the user's rows.
        statement = sql.SQL(
            "SELECT item_id, text, metadata, -(embedding <#> %b) AS score FROM {} "
            'WHERE user_id = %s ORDER BY score DESC, item_id COLLATE "C" LIMIT %s'
        ).format(self._items)
        return statement, (query, user_id, k)

    def _session_settings(self, user_id: str, search: bool = False) -> list[tuple[Query, tuple]]:
        """``set_config(..., true)`` statements: local to the transaction, bound parameters."""
        out: list[tuple[Query, tuple]] = [
            ("SELECT set_config(%s, %s, true)", (USER_SETTING, user_id))
        ]
        if search and self._hnsw:
            out.append(("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)", ()))
            if self._ef_search is not None:
                out.append(
                    ("SELECT set_config('hnsw.ef_search', %s, true)", (str(self._ef_search),))
                )
        return out

    @staticmethod
    def _hits(rows: list[tuple[Any, ...]]) -> list[tuple[Document, float]]:
        hits = [
            (Document(id=item_id, page_content=text, metadata={**meta, "score": float(score)}),
             float(score))
            for item_id, text, meta, score in rows
        ]  # fmt: skip
        hits.sort(key=lambda hit: -hit[1])  # stable: HNSW's relaxed order, exact ties kept
        return hits

    def _run(
        self,
        user_id: str,
        work: Callable[[psycopg.Connection[Any]], _T],
        *,
        search: bool = False,
        retry: bool = False,
    ) -> _T:
        """Run ``work`` in one transaction with the user set; retry reads once on a lost link."""
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                with self._ready().connection() as conn:
                    for statement, params in self._session_settings(user_id, search):
                        conn.execute(statement, params)
                    return work(conn)
            except psycopg.OperationalError:
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _arun(
        self,
        user_id: str,
        work: Callable[[psycopg.AsyncConnection[Any]], Any],
        *,
        search: bool = False,
        retry: bool = False,
    ) -> Any:
        """Async twin of :meth:`_run` (``work`` returns an awaitable)."""
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                pool = await self._aready()
                async with pool.connection() as conn:
                    for statement, params in self._session_settings(user_id, search):
                        await conn.execute(statement, params)
                    return await work(conn)
            except psycopg.OperationalError:
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _aready(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; create a new one.")
        if self._apool is None or self._apool_loop is not loop:
            if self._pool is None:
                await asyncio.to_thread(self._ready)
            # A pool belongs to the loop that opened it; a new loop (each asyncio.run) gets its
            # own, and the old one's connections close with it.
            self._apool = AsyncConnectionPool(
                self._url,
                configure=self._aconfigure,
                check=AsyncConnectionPool.check_connection,
                open=False,
                name=f"rpo-{self._schema}-async",
                **self._pool_args,  # type: ignore[arg-type]
            )
            self._apool_loop = loop
            await self._apool.open()
        return self._apool

    async def _aconfigure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        register_vector_info(conn, self._vector_info)

    # ------------------------------------------------------------------ writes

    def add_embeddings(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts with vectors computed elsewhere, in one transaction (all or nothing).

        An existing id is replaced (text, metadata and vector). Vectors are stored normalised.

        Args:
            user_id: The user.
            texts: The texts.
            embeddings: One vector per text, finite and non-zero, of the schema's width.
            metadatas: One JSON-serialisable dict per text (optional).
            ids: One unique string id per text (optional; uuid4 hex by default).

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: Before anything is written: every check of
                :func:`~langchain_rpo.history_checks.check_add_call`, a NUL in the user id, a
                text or an id, a bad vector (named ``embeddings[i]``), or a count mismatch.
        """
        self._ready()
        item_ids, rows = self._checked_add(user_id, texts, embeddings, metadatas, ids)
        if rows:
            self._run(rows[0][0], lambda conn: self._write(conn, rows))
        return item_ids

    async def aadd_embeddings(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Async twin of :meth:`add_embeddings`."""
        await self._aready()
        item_ids, rows = self._checked_add(user_id, texts, embeddings, metadatas, ids)
        if rows:
            await self._arun(rows[0][0], lambda conn: self._awrite(conn, rows))
        return item_ids

    def add_texts(
        self,
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Embed texts and add them in one transaction (an existing id is replaced).

        The arguments are checked before the embeddings model runs.

        Raises:
            ValueError: As :meth:`add_embeddings`.
        """
        user_id, text_list, metas, item_ids = self._prechecked(user_id, texts, metadatas, ids)
        if not text_list:
            return []
        vectors = self.embeddings.embed_documents(text_list)
        return self.add_embeddings(user_id, text_list, vectors, metas, item_ids)

    async def aadd_texts(
        self,
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Async twin of :meth:`add_texts` (awaits ``aembed_documents``)."""
        user_id, text_list, metas, item_ids = self._prechecked(user_id, texts, metadatas, ids)
        if not text_list:
            return []
        vectors = await self.embeddings.aembed_documents(text_list)
        return await self.aadd_embeddings(user_id, text_list, vectors, metas, item_ids)

    def _delete_query(self) -> Query:
        return sql.SQL("DELETE FROM {} WHERE user_id = %s AND item_id = ANY(%s)").format(
            self._items
        )

    @staticmethod
    def _storable_ids(ids: Sequence[str]) -> list[str]:
        # An id holding NUL can never have been stored: it is simply not found.
        return [i for i in check_str_sequence(ids, "ids") if "\x00" not in i]

    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete the user's items by id; unknown ids are ignored. Returns how many went."""
        user_id, wanted = self._user(user_id), self._storable_ids(ids)
        if not wanted:
            return 0
        query = self._delete_query()
        return self._run(user_id, lambda conn: conn.execute(query, (user_id, wanted)).rowcount)

    async def adelete(self, user_id: str, ids: Sequence[str]) -> int:
        """Async twin of :meth:`delete`."""
        user_id, wanted = self._user(user_id), self._storable_ids(ids)
        if not wanted:
            return 0
        query = self._delete_query()

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            return (await conn.execute(query, (user_id, wanted))).rowcount

        return await self._arun(user_id, work)

    def forget(self, user_id: str) -> int:
        """Delete the user's items and feedback events, in one transaction.

        Returns:
            How many items the user held.
        """
        user_id = self._user(user_id)
        items = sql.SQL("DELETE FROM {} WHERE user_id = %s").format(self._items)
        events = sql.SQL("DELETE FROM {} WHERE user_id = %s").format(self._feedback)

        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute(events, (user_id,))
            return conn.execute(items, (user_id,)).rowcount

        return self._run(user_id, work)

    async def aforget(self, user_id: str) -> int:
        """Async twin of :meth:`forget`."""
        user_id = self._user(user_id)
        items = sql.SQL("DELETE FROM {} WHERE user_id = %s").format(self._items)
        events = sql.SQL("DELETE FROM {} WHERE user_id = %s").format(self._feedback)

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            await conn.execute(events, (user_id,))
            return (await conn.execute(items, (user_id,))).rowcount

        return await self._arun(user_id, work)

    # ------------------------------------------------------------------ feedback events

    def add_feedback(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Store feedback events of one user, in one transaction (all or nothing).

        An event whose id is stored already is replaced (it keeps its place among events of
        the same instant). See :meth:`HistoryBackend.add_feedback`.

        Raises:
            ValueError: On a call :func:`~langchain_rpo.feedback.check_events` refuses, or an
                event id holding a NUL character (PostgreSQL text cannot store it).
        """
        user_id = self._user(user_id)
        checked = check_events(user_id, events)
        for event in checked:
            check_no_nul(event.event_id, "event_id")
        if not checked:
            return 0
        self._ready()
        statement = sql.SQL(
            "INSERT INTO {} (user_id, event_id, time, event) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (user_id, event_id) DO UPDATE SET time = excluded.time, "
            "event = excluded.event"
        ).format(self._feedback)
        rows = [(user_id, e.event_id, e.time, Json(e.to_dict())) for e in checked]
        # Id order, as items are upserted: concurrent writers cannot deadlock.
        rows.sort(key=lambda row: row[1])

        def work(conn: psycopg.Connection[Any]) -> int:
            conn.cursor().executemany(statement, rows)
            return len(rows)

        return self._run(user_id, work)

    def feedback(self, user_id: str) -> list[FeedbackEvent]:
        """The user's feedback events in time order (same instant: the order stored).

        Raises:
            ValueError: When a stored event no longer passes the event checks (edited by hand
                in the database), naming it.
        """
        user_id = self._user(user_id)
        self._ready()
        query = sql.SQL(
            "SELECT event_id, event FROM {} WHERE user_id = %s ORDER BY time, seq"
        ).format(self._feedback)
        rows = self._run(
            user_id, lambda conn: conn.execute(query, (user_id,)).fetchall(), retry=True
        )
        events = []
        for event_id, data in rows:
            try:
                events.append(FeedbackEvent.from_dict(data))
            except ValueError as exc:
                raise ValueError(
                    f"Schema {self._schema!r}: the stored feedback event {event_id!r} of this "
                    f"user is invalid: {exc} Fix: delete it (delete_feedback) or restore it."
                ) from None
        return in_time_order(events)  # stable: the database order stands for equal instants

    def delete_feedback(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Delete the user's events by id; unknown ids are ignored. Returns how many went."""
        user_id, wanted = self._user(user_id), self._storable_ids(event_ids)
        if not wanted:
            return 0
        self._ready()
        query = sql.SQL("DELETE FROM {} WHERE user_id = %s AND event_id = ANY(%s)").format(
            self._feedback
        )
        return self._run(user_id, lambda conn: conn.execute(query, (user_id, wanted)).rowcount)

    def feedback_users(self) -> list[str]:
        """The users that have feedback events, sorted (the owner's view, as :meth:`users`)."""
        self._ready()
        query = sql.SQL('SELECT DISTINCT user_id COLLATE "C" AS u FROM {} ORDER BY u').format(
            self._feedback
        )
        rows = self._run("", lambda conn: conn.execute(query).fetchall(), retry=True)
        return [row[0] for row in rows]

    # ------------------------------------------------------------------ reads

    def _checked_search(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int
    ) -> tuple[str, np.ndarray, int]:
        user_id = self._user(user_id)
        k = check_k(k)
        query = normalised_vectors(vector, self._dim, "the query vector")
        if query.shape[0] != 1:
            raise ValueError(
                f"search_by_vector takes one vector, got {query.shape[0]}; call it per row."
            )
        return user_id, query[0], k

    def search_with_scores_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items nearest to an embedded query, most similar first, with scores.

        Args:
            user_id: The user.
            vector: The query vector (normalised here, so any scale works).
            k: How many items at most.

        Returns:
            ``(document, cosine similarity)`` pairs; each document has ``.id`` and its metadata
            plus ``"score"``. An unknown user or ``k=0`` gives ``[]``.

        Raises:
            ValueError: On an invalid user id (NUL included), ``k``, or vector.
        """
        self._ready()
        user_id, query, k = self._checked_search(user_id, vector, k)
        if k == 0:
            return []
        statement, params = self._search_query(user_id, query, k)
        rows = self._run(
            user_id,
            lambda conn: conn.execute(statement, params).fetchall(),
            search=True,
            retry=True,
        )
        return self._hits(rows)

    def search_with_scores(
        self, user_id: str, query: str, k: int = 4
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items most similar to ``query``, with cosine similarities.

        One round trip: the query is embedded and searched without counting first (an unknown
        user gives ``[]`` all the same).
        """
        user_id = self._user(user_id)
        check_query(query)
        if check_k(k) == 0:
            return []
        return self.search_with_scores_by_vector(user_id, self.embed_query(query), k)

    async def asearch(self, user_id: str, query: str, k: int = 4) -> list[Document]:
        """Async twin of :meth:`search` (awaits ``aembed_query``)."""
        user_id = self._user(user_id)
        check_query(query)
        if check_k(k) == 0:
            return []
        vector = await self.embeddings.aembed_query(query)
        return await self.asearch_by_vector(user_id, vector, k)

    async def asearch_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[Document]:
        """Async twin of :meth:`search_by_vector`."""
        await self._aready()
        user_id, query, k = self._checked_search(user_id, vector, k)
        if k == 0:
            return []
        statement, params = self._search_query(user_id, query, k)

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            return await (await conn.execute(statement, params)).fetchall()

        rows = await self._arun(user_id, work, search=True, retry=True)
        return [doc for doc, _ in self._hits(rows)]

    def get(self, user_id: str, ids: Sequence[str]) -> list[Document]:
        """The user's items by id, in the order asked; unknown ids are skipped."""
        user_id = self._user(user_id)
        asked = check_str_sequence(ids, "ids")
        wanted = self._storable_ids(asked)
        if not wanted:
            return []
        query = sql.SQL(
            "SELECT item_id, text, metadata FROM {} WHERE user_id = %s AND item_id = ANY(%s)"
        ).format(self._items)
        rows = self._run(
            user_id, lambda conn: conn.execute(query, (user_id, wanted)).fetchall(), retry=True
        )
        found = {item_id: (text, meta) for item_id, text, meta in rows}
        return [
            Document(id=i, page_content=found[i][0], metadata=found[i][1])
            for i in asked
            if i in found
        ]

    def count(self, user_id: str) -> int:
        """How many items the user has (0 for an unknown user)."""
        user_id = self._user(user_id)
        query = sql.SQL("SELECT count(*) FROM {} WHERE user_id = %s").format(self._items)
        return self._run(
            user_id, lambda conn: conn.execute(query, (user_id,)).fetchone()[0], retry=True
        )

    async def acount(self, user_id: str) -> int:
        """Async twin of :meth:`count`."""
        user_id = self._user(user_id)
        query = sql.SQL("SELECT count(*) FROM {} WHERE user_id = %s").format(self._items)

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            row = await (await conn.execute(query, (user_id,))).fetchone()
            return int(row[0]) if row else 0

        return await self._arun(user_id, work, retry=True)

    def users(self) -> list[str]:
        """The users that have history, sorted by code point (as Python sorts).

        Reads across users: as a role held to row-level security, it lists only the user set
        in ``rpo.user_id`` (none); run it as the owner (or a ``BYPASSRLS`` role).
        """
        query = sql.SQL('SELECT DISTINCT user_id COLLATE "C" AS u FROM {} ORDER BY u').format(
            self._items
        )
        rows = self._run("", lambda conn: conn.execute(query).fetchall(), retry=True)
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """The number of items of every user (one grouped query; the owner's view, as users)."""
        query = sql.SQL(
            'SELECT user_id COLLATE "C" AS u, count(*) FROM {} GROUP BY u ORDER BY u'
        ).format(self._items)
        rows = self._run("", lambda conn: conn.execute(query).fetchall(), retry=True)
        return {user: int(n) for user, n in rows}

    def iter_items(self, user_id: str, *, with_vectors: bool = False) -> Iterator[HistoryRecord]:
        """Every item of one user in insertion order, streamed in pages of 500 (keyset paging).

        Each page is its own short transaction, so a long export holds no connection between
        pages; items added meanwhile may or may not appear, deleted ones may already be gone.
        """
        user_id = self._user(user_id)
        column = sql.SQL(", embedding") if with_vectors else sql.SQL("")
        query = sql.SQL(
            "SELECT seq, item_id, text, metadata{} FROM {} WHERE user_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s"
        ).format(column, self._items)
        after = -1
        while True:
            rows = self._run(
                user_id,
                lambda conn, a=after: conn.execute(query, (user_id, a, _PAGE)).fetchall(),
                retry=True,
            )
            for row in rows:
                yield HistoryRecord(
                    user_id=user_id,
                    id=row[1],
                    text=row[2],
                    metadata=row[3],
                    vector=_as_list(row[4]) if with_vectors else None,
                )
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]
