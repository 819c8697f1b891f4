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

pulsectl (which the virtual mic uses for control) binds only the record side of streams.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import (
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
    name = ctypes.util.find_library("pulse") or "libpulse.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise DeviceError(f"cannot load libpulse ({exc}): 'apt-get install libpulse0'") from None
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "pa_mainloop_new": (c_void_p, []),
        "pa_mainloop_get_api": (c_void_p, [c_void_p]),
        "pa_mainloop_iterate": (c_int, [c_void_p, c_int, c_void_p]),
        "pa_mainloop_free": (None, [c_void_p]),
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
        "pa_stream_get_device_name": (c_char_p, [c_void_p]),
        "pa_stream_writable_size": (c_size_t, [c_void_p]),
        "pa_stream_write": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_int64, c_int]),
        "pa_stream_update_timing_info": (c_void_p, [c_void_p, c_void_p, c_void_p]),
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
        getattr(lib, function).restype = restype
        getattr(lib, function).argtypes = argtypes
    return lib


class PlaybackStream:
    """Float32 mono at `rate` into the sink `device`: `write` blocks while the server's
    buffer (`tlength` bytes) is full; `latency()` asks the server how much is queued, and
    counts in `underruns` each underrun that has ended by then.

    The stream's own mainloop runs in the calling thread, inside `write` and `latency`
    (pa_mainloop_iterate, no callbacks): libpulse then needs no thread of its own, and no
    Python callback has to wait for the interpreter's lock while the audio waits on it.
    One thread at a time."""

    def __init__(self, device: str, name: str, rate: int, tlength: int, minreq: int) -> None:
        self._lib = lib = _library()
        self._loop = lib.pa_mainloop_new()
        self._context = lib.pa_context_new(lib.pa_mainloop_get_api(self._loop), b"airmic-receive")
        self._stream: int | None = None
        self._minreq = minreq
        self.underruns = 0
        self._ended_at: int | None = None  # the read index at which the last underrun ended
        self.dry = False  # in an underrun at the last report (not the prebuffering at start)
        try:
            self._connect(device, name, rate, tlength, minreq)
        except DeviceError:
            self.close()
            raise

    def _connect(self, device: str, name: str, rate: int, tlength: int, minreq: int) -> None:
        lib = self._lib
        if lib.pa_context_connect(self._context, None, 0, None) < 0:
            raise DeviceError(f"no PulseAudio server is reachable: {self._error()}")
        while (state := lib.pa_context_get_state(self._context)) != _CONTEXT_READY:
            if state in (_CONTEXT_FAILED, _CONTEXT_TERMINATED):
                raise DeviceError(f"no PulseAudio server is reachable: {self._error()}")
            self._iterate()
        spec = _SampleSpec(_FLOAT32LE, rate, 1)
        self._stream = lib.pa_stream_new(self._context, name.encode(), ctypes.byref(spec), None)
        if not self._stream:
            raise DeviceError(f"cannot make a PulseAudio stream: {self._error()}")
        attr = _BufferAttr(0xFFFFFFFF, tlength, tlength, minreq, 0xFFFFFFFF)
        flags = _ADJUST_LATENCY | _DONT_MOVE | _START_UNMUTED
        if lib.pa_stream_connect_playback(self._stream, device.encode(), ctypes.byref(attr),
                                          flags, None, None) < 0:  # fmt: skip
            raise DeviceError(f"cannot play into PulseAudio sink {device!r}: {self._error()}")
        while (state := lib.pa_stream_get_state(self._stream)) != _STREAM_READY:
            if state in (_STREAM_FAILED, _STREAM_TERMINATED):
                raise DeviceError(f"cannot play into PulseAudio sink {device!r}: {self._error()}")
            self._iterate()
        landed = (lib.pa_stream_get_device_name(self._stream) or b"").decode()
        if landed != device:  # a server may route a stream elsewhere: never play there
            raise DeviceError(f"the server put the stream on {landed!r}, not on {device!r}")

    def write(self, data: bytes) -> None:
        """Queue `data`, blocking while the server's buffer is full."""
        lib = self._lib
        view = memoryview(data)
        while view:
            self._check()
            room = lib.pa_stream_writable_size(self._stream)
            if room == 0 or room == _NO_SIZE:
                self._iterate()  # until the server asks for more
                continue
            piece = view[:room]
            buffer = (ctypes.c_char * len(piece)).from_buffer_copy(piece)
            if lib.pa_stream_write(self._stream, buffer, len(piece), None, 0, 0) < 0:
                raise DeviceError(f"PulseAudio write failed: {self._error()}")
            view = view[len(piece) :]
        while lib.pa_mainloop_iterate(self._loop, 0, None) > 0:  # send it now
            pass

    def latency(self) -> float:
        """Seconds until what is queued now has played, from a fresh timing report of the
        server's (negative: it has been dry that long)."""
        lib = self._lib
        self._wait(lib.pa_stream_update_timing_info(self._stream, None, None))
        usec, negative = c_uint64(), c_int()
        if lib.pa_stream_get_latency(self._stream, ctypes.byref(usec), ctypes.byref(negative)):
            return 0.0  # no report yet
        self._count(lib.pa_stream_get_timing_info(self._stream))
        return (-1 if negative.value else 1) * usec.value / 1e6

    def _count(self, report: Any) -> None:
        """Count an underrun that ended since the last report: the stream was dry then, or
        the read index at which its last underrun ended has moved (a whole one between)."""
        if not report:
            return
        info = report.contents
        if not info.playing:
            self.dry = self._ended_at is not None  # at the start it fills its prebuffer
            return
        ended_at = info.read_index - info.since_underrun
        if self.dry or (self._ended_at is not None and ended_at != self._ended_at):
            self.underruns += 1
        self.dry, self._ended_at = False, ended_at

    def resize(self, tlength: int) -> None:
        """A new buffer length, in bytes (also the prebuffer); what is queued stays."""
        attr = _BufferAttr(0xFFFFFFFF, tlength, tlength, self._minreq, 0xFFFFFFFF)
        self._wait(self._lib.pa_stream_set_buffer_attr(self._stream, ctypes.byref(attr), None,
                                                       None))  # fmt: skip

    def _wait(self, operation: int | None) -> None:
        """Until the server has answered `operation`."""
        lib = self._lib
        if not operation:
            raise DeviceError(f"PulseAudio refused a request: {self._error()}")
        try:
            while lib.pa_operation_get_state(operation) == _OPERATION_RUNNING:
                self._check()
                self._iterate()
        finally:
            lib.pa_operation_unref(operation)

    def _iterate(self) -> None:
        """Wait for the server's next message, and take it in."""
        if self._lib.pa_mainloop_iterate(self._loop, 1, None) < 0:
            raise DeviceError(f"the PulseAudio connection broke: {self._error()}")

    def _check(self) -> None:
        if self._lib.pa_stream_get_state(self._stream) != _STREAM_READY:
            raise DeviceError(f"the PulseAudio stream ended: {self._error()}")

    def _error(self) -> str:
        lib = self._lib
        return (lib.pa_strerror(lib.pa_context_errno(self._context)) or b"").decode()

    def close(self) -> None:
        """Disconnect and free everything (what is still queued is dropped)."""
        lib = self._lib
        if self._stream:
            lib.pa_stream_disconnect(self._stream)
            lib.pa_stream_unref(self._stream)
            self._stream = None
        if self._context:
            lib.pa_context_disconnect(self._context)
            lib.pa_context_unref(self._context)
            self._context = None
        if self._loop:
            lib.pa_mainloop_free(self._loop)
            self._loop = None
