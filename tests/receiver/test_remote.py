"""`Remote`, the receiver's side of a stream played in a worker process: what it sends the
worker, and the figures it shows (the worker's, with its own added once)."""

from __future__ import annotations

from airmic.common.delay import MODES
from airmic.receiver.rooms import Room
from airmic.receiver.session import Metrics, Origin
from airmic.receiver.sinks import SinkPlan
from airmic.receiver.workers import Plan, Remote


class Handle:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, message: tuple, now: bool = True) -> None:
        self.sent.append(message)


def remote() -> tuple[Remote, Handle]:
    origin = Origin("kitchen (127.0.0.1:5000)", True, room="kitchen")
    plan = Plan((("127.0.0.1", 5000), 7), origin, 0.0, Room("kitchen"), MODES["balanced"],
                None, (SinkPlan("null", description="null"),), ("null",))  # fmt: skip
    handle = Handle()
    return Remote(plan, handle, None, plan.room), handle  # type: ignore[arg-type]


def test_its_own_figures_are_added_to_the_workers_once():
    stream, _ = remote()
    stream.malformed, stream.reports, stream.ended = 2, 5, "worker"
    theirs = Metrics("kitchen (127.0.0.1:5000)", True, "udp", malformed=1, gaps=3)
    shown = stream.published(theirs)
    again = stream.published()  # the last figures, again (a worker that died)
    for m in (shown, again, stream.metrics):
        assert (m.malformed, m.reports, m.ended, m.gaps) == (3, 5, "worker", 3)


def test_bye_and_stop_reach_the_worker():
    stream, handle = remote()
    stream.play_out()
    stream.stop()
    assert stream.closing
    assert handle.sent == [("play out", stream.key), ("stop", stream.key)]
