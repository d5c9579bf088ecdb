"""Cooperative cancellation of local generation, carried by a context variable.

A caller that may give up on a generation (a timeout, a cancelled ``asyncio`` task, a consumer
that stops reading a stream) opens a :func:`cancel_scope` and sets its event when it gives up;
a generation loop started inside the scope checks :func:`cancel_requested` between tokens and
stops. The scope travels in a :class:`~contextvars.ContextVar`, so it reaches code that runs in
an executor thread (LangChain's executors copy the context) without any argument: chat models
that know nothing of it simply never look.

Scopes nest: cancelling an outer scope cancels everything started inside it.

>>> with cancel_scope() as cancel:
...     check = cancel_requested()
...     check()
...     cancel.set()
...     check()
False
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["cancel_requested", "cancel_scope"]

_EVENTS: ContextVar[tuple[threading.Event, ...]] = ContextVar("rpo_cancel_events", default=())


@contextmanager
def cancel_scope() -> Iterator[threading.Event]:
    """Open a scope whose event, once set, asks every generation started inside it to stop.

    Yields:
        The scope's event: ``set()`` it to cancel.
    """
    event = threading.Event()
    token = _EVENTS.set((*_EVENTS.get(), event))
    try:
        yield event
    finally:
        _EVENTS.reset(token)


def cancel_requested() -> Callable[[], bool]:
    """Return a check that says whether any scope open *now* has been cancelled.

    Call it where the work starts (in the context the scope was opened in) and hand the check
    to the loop, which may then run in any thread.
    """
    events = _EVENTS.get()
    return lambda: any(event.is_set() for event in events)
