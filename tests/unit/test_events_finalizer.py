"""A connection whose last reference goes in a finalizer (a virDomain in a reference cycle, freed by the garbage
collector) deregisters its event callbacks even when the collector runs on a thread that is walking the event
registry at that moment. The full suite hung forever there once (listening() -> gc -> virDomain.__del__ ->
deregister_all on the same, non-reentrant lock)."""

from __future__ import annotations

import gc
import threading

import virtsnap
from virtsnap import events


class _CollectingScope(str):
    """A scope whose comparison runs the garbage collector, as any allocation inside the registry's walk can."""

    def __eq__(self, other: object) -> bool:
        gc.collect()
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_connection_freed_by_the_collector_mid_walk_does_not_hang():
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    conn.domainEventRegisterAny(dom, virtsnap.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *a: None, None)
    cycle: list = [dom]
    cycle.append(cycle)  # only the collector frees the domain, and with it the connection's last reference
    del dom
    conn.close()
    watcher = virtsnap.open("test:///default")
    callback_id = events.register(watcher, _CollectingScope("collecting"), None, 0, lambda *a: None, None)
    del cycle
    result: list[bool] = []
    walker = threading.Thread(target=lambda: result.append(events.listening("collecting")), daemon=True)
    walker.start()
    walker.join(60)
    assert not walker.is_alive(), "the registry walk deadlocked with the finalizer"
    assert result == [True]
    assert [r for r in events._copy() if r.conn is conn] == []  # the freed connection's callback is gone
    events.deregister(watcher, callback_id)
    watcher.close()
