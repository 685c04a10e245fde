"""``open_store(url)``: a job store from a URL."""

from __future__ import annotations

from ._base import JobStore, StoreError, redact_url

__all__ = ["open_store"]


async def open_store(url: str, *, batch_id: str) -> JobStore:
    """Open the store at ``url`` for batch ``batch_id``.

    - ``sqlite:///abs/path.sqlite3`` (or ``sqlite://relative/path.sqlite3``): a
      :class:`~veo_async.stores.SQLiteStore`; everything after ``sqlite://`` is the path.
    - ``redis://[user:password@]host:port/db`` or ``rediss://...`` (TLS): a
      :class:`~veo_async.stores.RedisStore` (asyncio only; needs ``veo-async[redis]``).

    Raises :class:`~veo_async.stores.StoreUnavailableError` when Redis does not answer and
    :class:`~veo_async.stores.StoreError` for any other scheme.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from ._sqlite import SQLiteStore

        path = url[len("sqlite://") :]
        if not path:
            raise StoreError("sqlite:// needs a path: sqlite:///abs/path.sqlite3")
        return await SQLiteStore.open(path, batch_id=batch_id)
    if scheme in ("redis", "rediss"):
        from ._redis import RedisStore

        return await RedisStore.open(url, batch_id=batch_id)
    raise StoreError(
        f"unknown store URL {redact_url(url)!r}: use sqlite:///path or redis://host:port/db"
    )
