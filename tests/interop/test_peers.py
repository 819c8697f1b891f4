"""Interop with the tools engineers already use: ffmpeg and GStreamer, as real processes."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest
import soundfile

from airmic.common.red import RED_PAYLOAD_TYPE
from tests.audio_match import as_counted, match
from tests.processes import Process, ReceiverProcess, send

pytestmark = pytest.mark.interop


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: run scripts/test, which installs it")
    return path


def stream_into_airmic(peer: list[str], tmp_path, udp_port, speech_samples) -> dict:
    """Run `peer` sending to airmic-receive; check the audio; return the stream's stats."""
    receiver = ReceiverProcess(tmp_path, udp_port)
    sender = Process(peer, tmp_path, Path(peer[0]).name)
    assert sender.wait() == 0, sender.stderr
    # The peer has sent it all; stopped, the receiver plays out what it holds (not waiting
    # out its idle time: these peers say no goodbye).
    assert receiver.stop() == 0, receiver.stderr
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    result = match(speech_samples, out)
    (stream,) = receiver.stats()["streams"]
    print(f"\ncorrelation {result.correlation:.4f}, longest gap {result.longest_gap} frames, "
          f"{stream['gaps']} gaps counted ({stream['gap_ms']:.0f} ms)")  # fmt: skip
    # Whole, or every hole in the file counted: a stalled CI machine once delivered ffmpeg's
    # packets late enough for a 50 ms hole, which the receiver counted as it must.
    assert result.correlation >= 0.9
    assert as_counted(result, stream, 0.9), stream
    assert stream["lost"] == stream["malformed"] == 0
    return stream


@pytest.mark.parametrize("frame_ms, rtcp", [(20, False), (60, False), (20, True)])
def test_ffmpeg_sends_to_airmic(tmp_path, udp_port, speech, speech_samples, frame_ms, rtcp):
    """PT 97, the marker bit on every packet, bursty pacing; 60 ms frames are code-3
    packets. By default ffmpeg sends its RTCP to the next port, where no one listens; told
    to send it to the media port, it sends it from its next port: the receiver takes it.
    (The whole speech: its first report comes 5 s in; and ffmpeg's first sentence alone
    matched 0.86-0.93, its start weighing more.)"""
    options = f"?rtcpport={udp_port}" if rtcp else ""
    ffmpeg = (
        f"{need('ffmpeg')} -hide_banner -loglevel error -re -i {speech} -c:a libopus "
        f"-application voip -frame_duration {frame_ms} -b:a 64k "
        f"-f rtp rtp://127.0.0.1:{udp_port}{options}"
    )
    stream = stream_into_airmic(ffmpeg.split(), tmp_path, udp_port, speech_samples)
    assert stream["payload_type"] == 97
    assert (stream["reports"] > 0) == rtcp


@pytest.mark.parametrize("frame_ms", [10, 40])
def test_gstreamer_sends_to_airmic(
    tmp_path, udp_port, short_speech, short_speech_samples, frame_ms
):
    gst = (
        f"{need('gst-launch-1.0')} -q filesrc location={short_speech} ! wavparse ! audioconvert ! "
        f"audioresample ! opusenc frame-size={frame_ms} bitrate=64000 ! rtpopuspay ! "
        f"udpsink host=127.0.0.1 port={udp_port}"
    )
    stream = stream_into_airmic(gst.split(), tmp_path, udp_port, short_speech_samples)
    assert stream["payload_type"] == 96


@pytest.mark.parametrize("redundancy", [0, 1, 2])
def test_gstreamer_receives_from_airmic(
    tmp_path, udp_port, short_speech, short_speech_samples, redundancy
):
    """Plain Opus, and with RFC 2198 copies unpacked by GStreamer's own RED decoder."""
    out = tmp_path / "gst.wav"
    red = ["rtpreddec", f"pt={RED_PAYLOAD_TYPE}", "!"] if redundancy else []
    caps = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"
    gst = Process(
        [
            need("gst-launch-1.0"),
            "-e",
            "udpsrc",
            "address=127.0.0.1",
            f"port={udp_port}",
            f"caps={caps}",
            "!",
            *red,
            "rtpjitterbuffer",
            "latency=50",
            "!",
            "rtpopusdepay",
            "!",
            "opusdec",
            "!",
            "audioconvert",
            "!",
            "audioresample",
            "!",
            "audio/x-raw,rate=48000,channels=1,format=S16LE",
            "!",
            "wavenc",
            "!",
            "filesink",
            f"location={out}",
        ],
        tmp_path,
        "gstreamer",
    )
    gst.wait_for("PLAYING")  # udpsrc is bound once the pipeline plays
    sender = send(
        udp_port,
        "--input",
        f"file:{short_speech}",
        "--redundancy",
        str(redundancy),
        folder=tmp_path,
    )
    assert sender.wait() == 0, sender.stderr
    time.sleep(0.5)  # the jitter buffer's last 50 ms
    assert gst.stop(signal.SIGINT) == 0, gst.stderr  # -e: finish the WAV on Ctrl-C
    data, rate = soundfile.read(out, dtype="float32")
    assert rate == 48_000
    result = match(short_speech_samples, data)
    print(f"\nGStreamer decoded airmic ({redundancy} copies): {result.correlation:.4f}")
    assert result.correlation >= 0.9 and result.longest_gap <= 1
