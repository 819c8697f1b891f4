"""One libpulse playback stream, through ctypes, that says exactly where the server stands.

Why not pa_simple (pasimple): its latency is interpolated from timing reports the server
sends now and then, and it reads 0 (a "negative" latency, clamped) for about the first
second of a stream, while the stream fills its prebuffer; a stall then went unseen, and
with it the gap the mic heard. It cannot say which device the stream landed on either.
Here every write is followed by a fresh timing report from the server (one round trip on
the local socket, about 0.1 ms), so the queue's length is the server's own figure, and
the device the server chose is checked against the one asked for. The same report says
whether the stream is playing and where its last underrun ended: each underrun is counted
as the server saw it, however short (the queue's length alone cannot tell a 1 ms underrun
from its own wobble on a busy machine).

One connection (`Connection`: a mainloop and a context) can carry many streams, driven by
one thread without blocking (`airmic.receiver.pulse_sink`): each stream then says through a
callback when the server asks for audio, answers a timing request, or changes state, and
the thread serves only the streams that called. A stream made without a connection has its
own, and blocking `write` and `latency` (for tests and one-off use).

pulsectl (which the virtual mic uses for control) binds only the record side of streams.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int64,
    c_long,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

from airmic.common.errors import DeviceError

_FLOAT32LE = 5
_CONTEXT_READY, _CONTEXT_FAILED, _CONTEXT_TERMINATED = 4, 5, 6
_STREAM_READY, _STREAM_FAILED, _STREAM_TERMINATED = 2, 3, 4
_OPERATION_RUNNING = 0
_ADJUST_LATENCY = 0x2000
_DONT_MOVE = 0x0200  # stay on the device asked for: never moved to another by the server
_START_UNMUTED = 0x10000

_NO_SIZE = ctypes.c_size_t(-1).value  # pa_stream_writable_size's error

_REQUEST_CB = CFUNCTYPE(None, c_void_p, c_size_t, c_void_p)  # pa_stream_request_cb_t
_NOTIFY_CB = CFUNCTYPE(None, c_void_p, c_void_p)  # pa_stream_notify_cb_t
_SUCCESS_CB = CFUNCTYPE(None, c_void_p, c_int, c_void_p)  # pa_stream_success_cb_t


class _SampleSpec(Structure):
    _fields_ = [("format", c_int), ("rate", c_uint32), ("channels", c_uint8)]


class _BufferAttr(Structure):
    _fields_ = [(name, c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq",
                                              "fragsize")]  # fmt: skip


class _Timeval(Structure):
    _fields_ = [("tv_sec", c_long), ("tv_usec", c_long)]


class _TimingInfo(Structure):
    _fields_ = [
        ("timestamp", _Timeval),
        ("synchronized_clocks", c_int),
        ("sink_usec", c_uint64),
        ("source_usec", c_uint64),
        ("transport_usec", c_uint64),
        ("playing", c_int),
        ("write_index_corrupt", c_int),
        ("write_index", c_int64),
        ("read_index_corrupt", c_int),
        ("read_index", c_int64),
        ("configured_sink_usec", c_uint64),
        ("configured_source_usec", c_uint64),
        ("since_underrun", c_int64),  # bytes played since the last underrun, while playing
    ]


def _library() -> Any:
    """libpulse, called with the interpreter's lock held (`PyDLL`), but for the one call that
    waits on the server (`pa_mainloop_poll`, through `blocking`): every other call only
    touches memory, and a thread that let go of the lock for each of them waited to get it
    back behind the other threads (up to the switch interval, 1 ms, each time: a dozen
    calls a block made a mic's writes late by 5-20 ms on a machine three quarters idle)."""
    name = ctypes.util.find_library("pulse") or "libpulse.so.0"
    try:
        lib: Any = ctypes.PyDLL(name)
        lib.blocking = ctypes.CDLL(name)
    except OSError as exc:
        raise DeviceError(f"cannot load libpulse ({exc}): 'apt-get install libpulse0'") from None
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "pa_mainloop_new": (c_void_p, []),
        "pa_mainloop_get_api": (c_void_p, [c_void_p]),
        "pa_mainloop_iterate": (c_int, [c_void_p, c_int, c_void_p]),
        "pa_mainloop_prepare": (c_int, [c_void_p, c_int]),
        "pa_mainloop_poll": (c_int, [c_void_p]),
        "pa_mainloop_dispatch": (c_int, [c_void_p]),
        "pa_mainloop_free": (None, [c_void_p]),
        "pa_mainloop_wakeup": (None, [c_void_p]),
        "pa_context_new": (c_void_p, [c_void_p, c_char_p]),
        "pa_context_connect": (c_int, [c_void_p, c_char_p, c_int, c_void_p]),
        "pa_context_get_state": (c_int, [c_void_p]),
        "pa_context_errno": (c_int, [c_void_p]),
        "pa_context_disconnect": (None, [c_void_p]),
        "pa_context_unref": (None, [c_void_p]),
        "pa_strerror": (c_char_p, [c_int]),
        "pa_stream_new": (c_void_p, [c_void_p, c_char_p, POINTER(_SampleSpec), c_void_p]),
        "pa_stream_connect_playback": (
            c_int,
            [c_void_p, c_char_p, POINTER(_BufferAttr), c_int, c_void_p, c_void_p],
        ),
        "pa_stream_get_state": (c_int, [c_void_p]),
        "pa_stream_set_state_callback": (None, [c_void_p, _NOTIFY_CB, c_void_p]),
        "pa_stream_set_write_callback": (None, [c_void_p, _REQUEST_CB, c_void_p]),
        "pa_stream_get_device_name": (c_char_p, [c_void_p]),
        "pa_stream_writable_size": (c_size_t, [c_void_p]),
        "pa_stream_write": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_int64, c_int]),
        "pa_stream_update_timing_info": (c_void_p, [c_void_p, _SUCCESS_CB, c_void_p]),
        "pa_stream_set_buffer_attr": (
            c_void_p,
            [c_void_p, POINTER(_BufferAttr), c_void_p, c_void_p],
        ),
        "pa_stream_get_latency": (c_int, [c_void_p, POINTER(c_uint64), POINTER(c_int)]),
        "pa_stream_get_timing_info": (POINTER(_TimingInfo), [c_void_p]),
        "pa_stream_disconnect": (c_int, [c_void_p]),
        "pa_stream_unref": (None, [c_void_p]),
        "pa_operation_get_state": (c_int, [c_void_p]),
        "pa_operation_unref": (None, [c_void_p]),
    }
    for function, (restype, argtypes) in signatures.items():
        for handle in (lib, lib.blocking):
            getattr(handle, function).restype = restype
            getattr(handle, function).argtypes = argtypes
    return lib


_LIB: Any = None


def _lib() -> Any:
    global _LIB
    if _LIB is None:
        _LIB = _library()
    return _LIB


class Connection:
    """One connection to the server: a mainloop and a context, connected at once (a
    DeviceError says why not). Only the thread that iterates it may use it and its
    streams; `wakeup` alone is for any thread."""

    def __init__(self, client: str = "airmic-receive") -> None:
        self._lib = lib = _lib()
        self._loop = lib.pa_mainloop_new()
        self._context = lib.pa_context_new(lib.pa_mainloop_get_api(self._loop), client.encode())
        try:
            if lib.pa_context_connect(self._context, None, 0, None) < 0:
                raise DeviceError(f"no PulseAudio server is reachable: {self.error()}")
            while (state := lib.pa_context_get_state(self._context)) != _CONTEXT_READY:
                if state in (_CONTEXT_FAILED, _CONTEXT_TERMINATED):
                    raise DeviceError(f"no PulseAudio server is reachable: {self.error()}")
                self.iterate()
        except DeviceError:
            self.close()
            raise

    def iterate(self, block: bool = True, busy: Callable[[], bool] = lambda: False) -> None:
        """Take in the server's messages (waiting for the next one if `block`, unless
        `busy()`), and send what is queued for it. `busy` is asked once the wake-ups that
        came before are spent (libpulse clears them as it prepares to wait): one that comes
        after it answered wakes the wait, none is lost."""
        lib = self._lib
        if lib.pa_mainloop_prepare(self._loop, -1 if block else 0) < 0:
            raise DeviceError(f"the PulseAudio connection broke: {self.error()}")
        if block and busy():
            lib.pa_mainloop_wakeup(self._loop)
        polled = lib.blocking.pa_mainloop_poll(self._loop)  # without the interpreter's lock
        if polled < 0 or lib.pa_mainloop_dispatch(self._loop) < 0:
            raise DeviceError(f"the PulseAudio connection broke: {self.error()}")

    def flush(self) -> None:
        """Send what is queued for the server now, without waiting for anything."""
        while self._lib.pa_mainloop_iterate(self._loop, 0, None) > 0:
            pass

    def wakeup(self) -> None:
        """End a blocking `iterate` in the thread driving this connection (any thread)."""
        self._lib.pa_mainloop_wakeup(self._loop)

    @property
    def broken(self) -> bool:
        return self._lib.pa_context_get_state(self._context) != _CONTEXT_READY

    def error(self) -> str:
        lib = self._lib
        return (lib.pa_strerror(lib.pa_context_errno(self._context)) or b"").decode()

    def close(self) -> None:
        lib = self._lib
        if self._context:
            lib.pa_context_disconnect(self._context)
            lib.pa_context_unref(self._context)
            self._context = None
        if self._loop:
            lib.pa_mainloop_free(self._loop)
            self._loop = None


class PlaybackStream:
    """Float32 mono at `rate` into the sink `device`; `latency()` asks the server how much
    is queued, and counts in `underruns` each underrun that has ended by then.

    Made without a `connection`, the stream has its own, is ready (or raised) when made,
    and `write` blocks while the server's buffer (`tlength` bytes) is full: its mainloop
    runs in the calling thread, inside `write` and `latency`. Made on a shared connection,
    it connects in the background and calls `notify()` (on the connection's thread, inside
    `iterate`) whenever the server asks for audio, answers `ask_timing`, or the stream's
    state changes; `ready` says where it stands, `writable` how much the server
    asked for, `put` queues audio at once, `ask_timing` and `answered` get a timing report
    without waiting for it."""

    def __init__(
        self,
        device: str,
        name: str,
        rate: int,
        tlength: int,
        minreq: int,
        connection: Connection | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self._lib = _lib()
        self._own = connection is None
        self._connection = connection
        self._stream: int | None = None
        self.device = device
        self._minreq = minreq
        self._rate = rate
        self.underruns = 0
        # The read index at which the last underrun ended: a stream starts playing at 0 (its
        # reports then say the read index and the bytes played since alike, on both servers).
        self._ended_at = 0
        self.dry = False  # in an underrun at the last report (not the prebuffering at start)
        self.started = False  # it has played since it was made (by the last report)
        self.dry_seconds = 0.0  # how long it had been dry, at the last report that found it so
        self._timing = False  # a timing request on its way
        self._was_ready = False
        self.asked = self.answered = 0.0  # when the last timing request went, and came back
        self._notify = notify or (lambda: None)
        # ctypes callbacks, kept alive as long as the stream is
        self._on_state = _NOTIFY_CB(lambda stream, data: self._notify())
        self._on_request = _REQUEST_CB(lambda stream, size, data: self._notify())
        self._on_timing = _SUCCESS_CB(lambda stream, ok, data: self._timed())
        try:
            if self._connection is None:
                self._connection = Connection()
            self._connect(name, rate, tlength, minreq)
            if self._own:
                while not self.ready:
                    self._connection.iterate()
        except DeviceError:
            self.close()
            raise

    def _connect(self, name: str, rate: int, tlength: int, minreq: int) -> None:
        lib, context = self._lib, self._context
        spec = _SampleSpec(_FLOAT32LE, rate, 1)
        self._stream = lib.pa_stream_new(context, name.encode(), ctypes.byref(spec), None)
        if not self._stream:
            raise DeviceError(f"cannot make a PulseAudio stream: {self._error()}")
        lib.pa_stream_set_state_callback(self._stream, self._on_state, None)
        lib.pa_stream_set_write_callback(self._stream, self._on_request, None)
        attr = _BufferAttr(0xFFFFFFFF, tlength, tlength, minreq, 0xFFFFFFFF)
        flags = _ADJUST_LATENCY | _DONT_MOVE | _START_UNMUTED
        if lib.pa_stream_connect_playback(self._stream, self.device.encode(), ctypes.byref(attr),
                                          flags, None, None) < 0:  # fmt: skip
            raise DeviceError(f"cannot play into PulseAudio sink {self.device!r}: {self._error()}")

    @property
    def _context(self) -> Any:
        assert self._connection is not None
        return self._connection._context

    @property
    def ready(self) -> bool:
        """Connected, on the device asked for (a DeviceError if it failed, or if the server
        put it anywhere else: a server may route a stream elsewhere; never play there)."""
        state = self._lib.pa_stream_get_state(self._stream)
        if state != _STREAM_READY:
            if state in (_STREAM_FAILED, _STREAM_TERMINATED) and not self._was_ready:
                raise DeviceError(
                    f"cannot play into PulseAudio sink {self.device!r}: {self._error()}"
                )
            self._check(connecting=True)
            return False
        if self._was_ready:
            return True
        landed = (self._lib.pa_stream_get_device_name(self._stream) or b"").decode()
        if landed != self.device:
            raise DeviceError(f"the server put the stream on {landed!r}, not on {self.device!r}")
        self._was_ready = True
        return True

    def writable(self) -> int:
        """Bytes the server has asked for and not yet been given."""
        room = self._lib.pa_stream_writable_size(self._stream)
        return 0 if room == _NO_SIZE else int(room)

    def put(self, data: bytes) -> None:
        """Queue `data` for the server now, asked for or not (sent at the next iterate)."""
        self._check()
        buffer = (ctypes.c_char * len(data)).from_buffer_copy(data)
        if self._lib.pa_stream_write(self._stream, buffer, len(data), None, 0, 0) < 0:
            raise DeviceError(f"PulseAudio write failed: {self._error()}")

    def write(self, data: bytes) -> None:
        """Queue `data`, blocking while the server's buffer is full (own connection)."""
        assert self._connection is not None
        view = memoryview(data)
        while view:
            self._check()
            room = self.writable()
            if room == 0:
                self._connection.iterate()  # until the server asks for more
                continue
            self.put(bytes(view[:room]))
            view = view[room:]
        self._connection.flush()

    def ask_timing(self) -> None:
        """Ask the server for a fresh timing report; `answered` says when it came."""
        operation = self._lib.pa_stream_update_timing_info(self._stream, self._on_timing, None)
        if not operation:
            raise DeviceError(f"PulseAudio refused a request: {self._error()}")
        self._lib.pa_operation_unref(operation)
        self._timing, self.asked = True, time.monotonic()

    def _timed(self) -> None:
        self._timing, self.answered = False, time.monotonic()
        self._notify()

    @property
    def timing(self) -> bool:
        """Whether a timing report is on its way."""
        return self._timing

    def reported_latency(self) -> float:
        """Seconds until what is queued now has played, as of the last timing report
        (negative: it has been dry that long); counts the underruns it shows."""
        lib = self._lib
        usec, negative = c_uint64(), c_int()
        if lib.pa_stream_get_latency(self._stream, ctypes.byref(usec), ctypes.byref(negative)):
            return 0.0  # no report yet
        self._count(lib.pa_stream_get_timing_info(self._stream))
        return (-1 if negative.value else 1) * usec.value / 1e6

    def latency(self) -> float:
        """A fresh report's `reported_latency`, waiting for it (own connection)."""
        assert self._connection is not None
        self.ask_timing()
        while self.timing:
            self._check()
            self._connection.iterate()
        return self.reported_latency()

    def _count(self, report: Any) -> None:
        """Count an underrun that ended since the last report: the stream was dry then, or
        the read index at which its last underrun ended has moved (a whole one between).
        Counted from the stream's start: one before its first report that said it plays (a
        writer stalled 20 ms at its third block) was taken for the start, and went unseen."""
        if not report:
            return
        info = report.contents
        self.started = bool(info.playing) or info.read_index > 0
        if not info.playing:
            self.dry = info.read_index > 0  # nothing played yet: it fills its prebuffer
            if self.dry:  # the bytes it has been dry for (both servers: heard to 0.1 ms)
                self.dry_seconds = info.since_underrun / (4 * self._rate)
            return
        ended_at = info.read_index - info.since_underrun
        if self.dry or ended_at != self._ended_at:
            self.underruns += 1
        self.dry, self._ended_at = False, ended_at

    def resize(self, tlength: int) -> None:
        """A new buffer length, in bytes (also the prebuffer); what is queued stays. Not
        waited for: the server applies it before anything written after."""
        attr = _BufferAttr(0xFFFFFFFF, tlength, tlength, self._minreq, 0xFFFFFFFF)
        operation = self._lib.pa_stream_set_buffer_attr(self._stream, ctypes.byref(attr), None,
                                                        None)  # fmt: skip
        if not operation:
            raise DeviceError(f"PulseAudio refused a request: {self._error()}")
        self._lib.pa_operation_unref(operation)

    def _check(self, connecting: bool = False) -> None:
        state = self._lib.pa_stream_get_state(self._stream)
        if state in (_STREAM_FAILED, _STREAM_TERMINATED) or not (
            connecting or state == _STREAM_READY
        ):
            raise DeviceError(f"the PulseAudio stream ended: {self._error()}")

    def _error(self) -> str:
        return self._connection.error() if self._connection is not None else ""

    def close(self) -> None:
        """Disconnect and free the stream (what is still queued is dropped), and its own
        connection."""
        lib = self._lib
        if self._stream:
            lib.pa_stream_set_state_callback(self._stream, _NOTIFY_CB(), None)
            lib.pa_stream_set_write_callback(self._stream, _REQUEST_CB(), None)
            lib.pa_stream_disconnect(self._stream)
            lib.pa_stream_unref(self._stream)
            self._stream = None
        if self._own and self._connection is not None:
            self._connection.close()
            self._connection = None
