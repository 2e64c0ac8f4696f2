"""Units of work: one connection, one explicit transaction manager, retries.

``transaction.manager`` is thread-local, and asyncio tasks share a thread, so
two coroutines using it would silently share one transaction. Every unit of
work here gets its *own* ``TransactionManager(explicit=True)`` and its own
connection: a forgotten ``begin()`` is an error instead of a shared transaction.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any, Callable, Iterator, TypeVar

import transaction
from transaction.interfaces import TransientError
from ZODB.DB import DB

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
BACKOFF_BASE = 0.002  # seconds; the n-th retry waits up to BACKOFF_BASE * 2**n ...
BACKOFF_CAP = 0.25  # ... but never more than this


def transact(
    db: DB,
    work: Callable[[Any], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    note: str | None = None,
    on_retry: Callable[[Exception, int], None] | None = None,
) -> T:
    """Run ``work(root)`` in a fresh transaction and commit it, retrying conflicts.

    ``work`` receives the root mapping of a private connection and may run up
    to *attempts* times, each time on a fresh view of the database: it must
    not have side effects outside it. Transient errors (write and read
    conflicts) abort and retry, and the last one is re-raised; anything else
    aborts and propagates at once, so a failed unit of work changes nothing.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    manager = transaction.TransactionManager(explicit=True)
    connection = db.open(transaction_manager=manager)
    try:
        attempt = 0
        while True:
            attempt += 1
            txn = manager.begin()
            if note:
                txn.note(note)
            try:
                result = work(connection.root())
                manager.commit()
                return result
            except TransientError as exc:
                manager.abort()
                if attempt >= attempts:
                    raise
                if on_retry is not None:
                    on_retry(exc, attempt)
                # Writers that retry at once collide again; a random, growing
                # pause spreads them out (exponential back-off with jitter).
                time.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
            except BaseException:
                manager.abort()
                raise
    finally:
        connection.close()


@contextlib.contextmanager
def reading(db: DB) -> Iterator[Any]:
    """A read-only view: yields the root, and aborts whatever was touched."""
    manager = transaction.TransactionManager(explicit=True)
    connection = db.open(transaction_manager=manager)
    manager.begin()
    try:
        yield connection.root()
    finally:
        manager.abort()
        connection.close()
