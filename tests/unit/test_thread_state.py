"""What virtsnap keeps per thread, and the locks it makes without the threading module (issue 21): the last
error (virGetLastError) and the reporting of failed calls are each thread's own, and the connection's lock
(virtsnap.locks.RLock) is re-entrant for its holder and closed to every other thread."""

from __future__ import annotations

import threading

import pytest

import virtsnap
from virtsnap.errors import libvirtError
from virtsnap.locks import RLock


def test_the_last_error_is_each_threads_own():
    conn = virtsnap.open("test:///default")
    virtsnap.registerErrorHandler(lambda ctx, err: None, None)
    try:
        virtsnap.virResetLastError()
        seen: dict[str, object] = {}

        def fail() -> None:
            seen["before"] = virtsnap.virGetLastError()
            with pytest.raises(libvirtError):
                conn.lookupByName("nope")
            seen["after"] = virtsnap.virGetLastErrorCode()

        worker = threading.Thread(target=fail)
        worker.start()
        worker.join(60)
        assert seen == {"before": None, "after": virtsnap.VIR_ERR_NO_DOMAIN}
        assert virtsnap.virGetLastError() is None  # this thread's: it failed nothing since its reset
        with pytest.raises(libvirtError):
            conn.lookupByUUIDString("00000000-0000-0000-0000-000000000000")
        assert virtsnap.virGetLastErrorCode() == virtsnap.VIR_ERR_NO_DOMAIN
    finally:
        virtsnap.registerErrorHandler(None, None)
        conn.close()


def test_a_failure_is_reported_on_its_own_thread_while_another_is_inside_a_call():
    """Thread B fails while thread A is still inside its failing call (in the error handler): B's failure is B's
    outermost call, so it is reported too, as libvirt's virDispatchError does per thread."""
    conn = virtsnap.open("test:///default")
    reports: list[tuple[str, int]] = []

    def fail() -> None:
        with pytest.raises(libvirtError):
            conn.lookupByName("nope")

    def handler(ctx: object, err: list[object]) -> None:
        reports.append((threading.current_thread().name, int(err[0])))  # type: ignore[call-overload]
        if threading.current_thread().name == "A":
            other = threading.Thread(target=fail, name="B")
            other.start()
            other.join(60)

    virtsnap.registerErrorHandler(handler, None)
    try:
        first = threading.Thread(target=fail, name="A")
        first.start()
        first.join(60)
    finally:
        virtsnap.registerErrorHandler(None, None)
        conn.close()
    assert reports == [("A", virtsnap.VIR_ERR_NO_DOMAIN), ("B", virtsnap.VIR_ERR_NO_DOMAIN)]


def test_the_connection_lock_is_reentrant_for_its_holder_only():
    lock = RLock()
    tried: list[bool] = []
    refused: list[BaseException] = []

    def elsewhere() -> None:
        """Another thread tries to take the lock, then to release it."""
        def other() -> None:
            got = lock.acquire(blocking=False)
            tried.append(got)
            if got:
                lock.release()
            else:
                try:
                    lock.release()
                except RuntimeError as exc:
                    refused.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(60)

    with lock, lock:  # taken twice by this thread
        elsewhere()
        lock.release()
        elsewhere()  # still held once
        lock.acquire()
    elsewhere()  # released as often as taken: free
    assert tried == [False, False, True]
    assert len(refused) == 2  # only the holder may release it
    assert lock.acquire(blocking=False)  # and the refused releases left it as it was
    lock.release()
