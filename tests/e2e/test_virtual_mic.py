"""The virtual microphone, on a private PulseAudio daemon and (where marked) on a private
PipeWire desktop too: made by the receiver, recorded from with parecord as any app would,
removed on exit, recovered after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from tests.audio_match import as_counted, match, silences
from tests.conftest import command, free_udp_port
from tests.pipewire import restart_pipewire_pulse
from tests.processes import Process, ReceiverProcess, send
from tests.pulse import SERVERS, pactl, record_pair, record_source

pytestmark = pytest.mark.e2e
MIC_CORRELATION = 0.92
"""Speech through Opus scores about 0.95 window by window (the file sinks' tests ask that);
into the mic, the delay control's steering against the sound server's clock and its steps
in quiet frames cost a little more (0.924 at worst, 0.96 typically, in about 20 runs). What
a listener would hear, a gap, is asserted on its own."""


def sources(env) -> list[str]:
    return [line.split("\t")[1] for line in pactl(env, "list", "sources", "short").splitlines()]


def airmic_modules(env) -> list[str]:
    return [m for m in pactl(env, "list", "modules", "short").splitlines() if "airmic" in m]


def receiver_in(tmp_path, name: str, port: int, env, sink: str = "virtual") -> ReceiverProcess:
    folder = tmp_path / name
    folder.mkdir()
    receiver = ReceiverProcess(folder, port, idle=None, sinks=(sink,), env=env)
    receiver.wait_for("is ready")
    return receiver


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_the_mic_appears_delivers_silence_then_the_stream(tmp_path, udp_port, pulse, speech):
    receiver = receiver_in(tmp_path, "receiver", udp_port, pulse)
    listing = pactl(pulse, "list", "sources")
    assert "Name: airmic\n" in listing and "Description: AirMic\n" in listing
    recorded = tmp_path / "mic.wav"
    recorder = Process(record_source("airmic", recorded), tmp_path, "parecord", pulse)
    subprocess.run(["sleep", "1"], check=True)  # no sender yet: the mic delivers silence
    sender = send(udp_port, "--input", f"file:{speech}", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    recorder.stop()
    assert receiver.stop() == 0, receiver.stderr
    (stream,) = receiver.stats()["streams"]
    assert airmic_modules(pulse) == []  # removed on exit
    assert "airmic" not in sources(pulse)

    speech_samples = soundfile.read(speech, dtype="float32")[0]
    out = soundfile.read(recorded, dtype="float32")[0]
    result = match(speech_samples, out, max_lag=len(out))  # recorded from before the start
    print(f"\nrecorded from the virtual mic: correlation {result.correlation:.4f}, "
          f"longest gap {result.longest_gap} frames")  # fmt: skip
    # Late in the full suite the machine itself stalls now and then: what that costs the
    # mic must be what the receiver counted.
    assert as_counted(result, stream, MIC_CORRELATION), stream
    assert result.lag > 0.8 * 48_000 and not out[: result.lag - 4800].any()  # silence first


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_another_app_playing_into_the_feed_is_not_heard(tmp_path, udp_port, pulse):
    """An app that plays into "AirMic (feed)" (picked by a user, or the default output of a
    machine with no sound card) is muted as it appears: of a 2 s tone, the mic hears at
    most its first few milliseconds (the server starts it before the receiver hears of it)."""
    receiver = receiver_in(tmp_path, "receiver", udp_port, pulse)
    tone = tmp_path / "tone.wav"
    soundfile.write(tone, 0.5 * np.sin(2 * np.pi * 440 * np.arange(96_000) / 48_000), 48_000)
    recorded = tmp_path / "mic.wav"
    recorder = Process(record_source("airmic", recorded), tmp_path, "parecord", pulse)
    subprocess.run(["paplay", "--device=airmic_feed", str(tone)], env=pulse, check=True,
                   timeout=30)  # fmt: skip
    recorder.stop()
    assert receiver.stop() == 0, receiver.stderr
    heard = np.flatnonzero(np.abs(soundfile.read(recorded, dtype="float32")[0]) > 0.01)
    heard_ms = (heard[-1] - heard[0]) / 48 if len(heard) else 0.0
    print(f"\nthe tone was heard at the mic for {heard_ms:.1f} ms of 2000")
    assert heard_ms < 50
    assert "muted 'paplay'" in receiver.stderr  # said where the user looks


def instrument_fits(pair, speech_samples) -> bool:
    """Whether the recorder's own input channel (the left) holds the speech played."""
    played = soundfile.read(pair, dtype="float32")[0][:, 0]
    return match(speech_samples, played, max_lag=len(played)).correlation > 0.9


@pytest.mark.parametrize("capture", ["device:pulse", "pulse:feed.monitor"])
def test_device_to_device_latency(tmp_path, udp_port, pulse, speech, speech_samples, capture):
    """speech ─paplay─► `feed` ─► airmic-send --input CAPTURE ─UDP─► airmic-receive
    --sink virtual ─► `airmic` mic; both ends recorded side by side to measure the delay.
    CAPTURE: PortAudio through ALSA's pulse plugin, or libpulse directly."""
    for attempt in range(2):
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        receiver = receiver_in(folder, "receiver", udp_port, pulse)
        pair = folder / "pair.wav"
        recorder = Process(record_pair("feed.monitor", "airmic", pair), folder, "gst", pulse)
        recorder.wait_for("PLAYING")
        sender = send(udp_port, "--input", capture, folder=folder, env=pulse)
        sender.wait_for("sending")
        subprocess.run(["paplay", "--device=feed", str(speech)], env=pulse, check=True,
                       timeout=60)  # fmt: skip
        subprocess.run(["sleep", "0.5"], check=True)
        assert sender.stop() == 0, sender.stderr
        recorded = recorder.stop(signal.SIGINT)
        assert receiver.stop() == 0, receiver.stderr
        # The instrument, not airmic: now and then GStreamer's mixer fails to negotiate
        # one of its inputs (one CI run in ~30), or a stalled machine costs the recorder's
        # own input channel (paplay's speech, as the server played it) part of the speech
        # (0.959, 0.962 seen; on CI 0.929 and once 0.779): then measured again, once.
        # airmic's channel is compared with that channel, as it was played.
        instrument = recorded == 0 and instrument_fits(pair, speech_samples)
        if instrument or attempt:
            break
        print(f"the recorder failed, measuring again: {recorder.stderr[-300:]}")
    assert recorded == 0, recorder.stderr
    assert instrument, "the recorder's own channel does not have the speech"
    played, heard = soundfile.read(pair, dtype="float32")[0].T
    result = match(played, heard)
    latency_ms = result.lag / 48
    print(f"\n{capture} to the virtual mic: {latency_ms:.1f} ms, "
          f"correlation {result.correlation:.4f}")  # fmt: skip
    # As clean as the receiver played it: what a stalled machine cost the mic is counted
    # (one CI run: a 30 ms hole at the mic).
    (stream,) = receiver.stats()["streams"]
    assert as_counted(result, stream, 0.9), stream
    assert 0 < latency_ms < 300  # the mic comes after the input, and not by a whole buffer


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_after_a_kill_a_restart_leaves_exactly_one_mic(tmp_path, pulse):
    killed = receiver_in(tmp_path, "killed", free_udp_port(), pulse)
    killed.stop(signal.SIGKILL)
    assert sources(pulse).count("airmic") == 1  # left behind
    restarted = receiver_in(tmp_path, "restarted", free_udp_port(), pulse)
    assert "replacing the virtual mic" in restarted.stderr
    assert sources(pulse).count("airmic") == 1
    assert len(airmic_modules(pulse)) == 2  # its null sink and its source, nothing more
    assert restarted.stop() == 0
    assert airmic_modules(pulse) == []


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_two_receivers_get_their_own_mics(tmp_path, pulse, short_speech, short_speech_samples):
    ports = free_udp_port(), free_udp_port()
    kitchen = receiver_in(tmp_path, "kitchen", ports[0], pulse, "virtual:kitchen")
    hall = receiver_in(tmp_path, "hall", ports[1], pulse, "virtual:hall")
    listing = pactl(pulse, "list", "sources")
    assert "Description: AirMic (kitchen)" in listing and "Description: AirMic (hall)" in listing
    # The same name twice is refused: the mic belongs to a running receiver.
    args = ["--listen", f"127.0.0.1:{free_udp_port()}", "--sink", "virtual:hall"]
    twin = Process([command("airmic-receive"), *args], tmp_path, "twin", pulse)
    assert twin.wait() == 1 and "belongs to a running receiver" in twin.stderr

    recordings = {n: tmp_path / f"{n}.wav" for n in ("kitchen", "hall")}
    recorders = [
        Process(record_source(f"airmic_{n}", path), tmp_path, f"rec-{n}", pulse)
        for n, path in recordings.items()
    ]
    senders = [
        send(ports[0], "--input", f"file:{short_speech}", folder=tmp_path, name="s1"),
        send(ports[1], "--input", "tone:440", "--duration", "3", folder=tmp_path, name="s2"),
    ]
    for sender in senders:
        assert sender.wait() == 0, sender.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    for process in [*recorders, kitchen, hall]:
        process.stop()
    (stream,) = kitchen.stats()["streams"]

    kitchen_audio = soundfile.read(recordings["kitchen"], dtype="float32")[0]
    kitchen = match(short_speech_samples, kitchen_audio, max_lag=len(kitchen_audio))
    assert as_counted(kitchen, stream, MIC_CORRELATION), (kitchen.correlation, stream)
    hall_audio = soundfile.read(recordings["hall"], dtype="float32")[0]
    spectrum = np.abs(np.fft.rfft(hall_audio))
    assert abs(np.argmax(spectrum) * 48_000 / len(hall_audio) - 440) < 2  # the tone, alone


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_list_sinks_shows_the_server_and_its_mics(tmp_path, udp_port, pulse):
    receiver = receiver_in(tmp_path, "receiver", udp_port, pulse, "virtual:den")
    listing = subprocess.run(
        [command("airmic-receive"), "--list-sinks"], env=pulse, capture_output=True, text=True
    )
    receiver.stop()
    assert listing.returncode == 0
    print(listing.stdout)
    server = "PulseAudio" if pulse.get("PIPEWIRE_RUNTIME_DIR") is None else "PipeWire"
    assert f"sound server: {server} " in listing.stdout
    assert "airmic_den_feed" not in listing.stdout  # the mic, not the feed's monitor
    assert "airmic_den  'AirMic (den)'" in listing.stdout


def test_without_a_server_the_virtual_mic_says_what_is_missing(tmp_path, udp_port):
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/nothing-here"}
    args = ["--listen", f"127.0.0.1:{udp_port}", "--sink", "virtual"]
    receiver = Process([command("airmic-receive"), *args], tmp_path, "receiver", env)
    assert receiver.wait() == 1
    assert "no PulseAudio server is reachable" in receiver.stderr
    assert "apt-get install" in receiver.stderr and "Traceback" not in receiver.stderr


def test_with_pipewire_but_not_pipewire_pulse_the_hint_says_to_start_it(tmp_path, udp_port):
    (tmp_path / "pipewire-0").touch()  # where PipeWire's socket is
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/nothing-here",
           "PIPEWIRE_RUNTIME_DIR": str(tmp_path)}  # fmt: skip
    args = ["--listen", f"127.0.0.1:{udp_port}", "--sink", "virtual"]
    receiver = Process([command("airmic-receive"), *args], tmp_path, "receiver", env)
    assert receiver.wait() == 1
    assert "start pipewire-pulse" in receiver.stderr and "Traceback" not in receiver.stderr


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_a_missing_pulse_source_is_a_clear_error(tmp_path, udp_port, pulse):
    sender = send(udp_port, "--input", "pulse:no.such.source", folder=tmp_path, env=pulse)
    assert sender.wait() == 1
    assert "cannot record from PulseAudio source 'no.such.source'" in sender.stderr
    assert "pulse:feed.monitor" in sender.stderr  # the sources there are
    assert "Traceback" not in sender.stderr


@pytest.mark.parametrize("pulse", SERVERS, indirect=True)
def test_list_devices_names_the_servers_sources(tmp_path, pulse):
    described = ["sink_name=studio", "sink_properties=device.description=Studio-Desk"]
    pactl(pulse, "load-module", "module-null-sink", *described)
    listing = Process([command("airmic-send"), "--list-devices"], tmp_path, "list", pulse)
    assert listing.wait() == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == "PulseAudio / PipeWire sources (--input pulse:NAME):"
    studio = next(line for line in lines if "pulse:studio.monitor" in line)
    assert "Monitor of Studio-Desk" in studio  # by its description, as --input takes it
    assert next(line for line in lines if "pulse:feed.monitor" in line).endswith("(default)")


def test_a_server_that_dies_under_the_receiver_is_survived(tmp_path, udp_port, pulse):
    folder = tmp_path / "receiver"
    folder.mkdir()
    wav = folder / "out.wav"
    receiver = ReceiverProcess(
        folder, udp_port, idle=None, sinks=("virtual", f"wav:{wav}"), env=pulse
    )
    sender = send(udp_port, "--input", "tone:440", "--duration", "3", folder=tmp_path)
    receiver.wait_for("started")
    subprocess.run(["pulseaudio", "-k"], env=pulse, check=True, timeout=30)
    assert sender.wait() == 0, sender.stderr
    # A stream that starts now cannot reach the mic, but still gets its file.
    later = send(udp_port, "--input", "tone:440", "--duration", "2", folder=tmp_path, name="s2")
    assert later.wait() == 0, later.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    assert receiver.stop() == 0, receiver.stderr  # no hang, no traceback
    assert "playback stopped" in receiver.stderr and "no virtual" in receiver.stderr
    assert "could not remove the virtual microphone" in receiver.stderr
    assert "Traceback" not in receiver.stderr
    assert receiver.stats()["sink_errors"] == {"virtual": 1}
    second = soundfile.read(folder / "out-2.wav", dtype="float32")[0]
    assert len(second) > 1.5 * 48_000


@pytest.mark.parametrize("load", ["stalled loop", "busy core", "frozen receiver"])
def test_every_gap_at_the_mic_is_counted(tmp_path, udp_port, pulse, speech, load):
    """The audio does not wait on the event loop: with the loop blocked 200 ms every 2 s
    (a test hook), or one core taken by a spinning process, the mic's recording has no gap
    the receiver did not count in its stats; and when the whole receiver is frozen
    (SIGSTOP, twice 80 ms), the gaps the mic heard are the ones it counted."""
    env = {**pulse, "AIRMIC_TEST_STALL": "0.2/2"} if load == "stalled loop" else pulse
    folder = tmp_path / "receiver"
    folder.mkdir()
    receiver = ReceiverProcess(folder, udp_port, idle=None, sinks=("virtual",), env=env)
    receiver.wait_for("is ready")
    hog = None
    if load == "busy core":  # bounded: it ends by itself after 30 s
        spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
        hog = Process([sys.executable, "-c", spin], tmp_path, "hog")
    recorded = tmp_path / "mic.wav"
    recorder = Process(record_source("airmic", recorded), tmp_path, "parecord", pulse)
    args = ["--input", f"file:{speech}", "--loop", "--duration", "8"]
    sender = send(udp_port, *args, folder=tmp_path)
    if load == "frozen receiver":
        receiver.wait_for("started")
        for pause in (3.0, 3.0):
            subprocess.run(["sleep", str(pause)], check=True)
            os.kill(receiver.proc.pid, signal.SIGSTOP)
            subprocess.run(["sleep", "0.08"], check=True)
            os.kill(receiver.proc.pid, signal.SIGCONT)
    assert sender.wait() == 0, sender.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    recorder.stop()
    if hog is not None:
        hog.stop(signal.SIGKILL)
    assert receiver.stop() == 0, receiver.stderr

    reference = np.tile(soundfile.read(speech, dtype="float32")[0], 2)[: 8 * 48_000]
    out = soundfile.read(recorded, dtype="float32")[0]
    # The recording starts a few seconds before the stream; the speech repeats after 9.5 s.
    result = match(reference, out, max_lag=5 * 48_000)
    (stream,) = receiver.stats()["streams"]
    heard, heard_ms, longest_ms = silences(reference, result.aligned)
    print(f"\n{load}: correlation {result.correlation:.4f}, {heard} gaps heard ({heard_ms} ms), "
          f"{stream['gaps']} counted ({stream['gap_ms']} ms); the stream's own: "
          f"{stream['underruns']} underruns, {stream['late']} late")  # fmt: skip
    assert result.correlation >= 0.85
    # Every silence heard was counted, give or take two 5 ms frames (the realignment around
    # it): at the mic, or where the stream itself ran dry (concealment, then silence: the
    # time it was stretched; its end is one).
    assert heard_ms <= stream["gap_ms"] + stream["stretched"] / 48 + 10 * heard
    if load == "stalled loop":  # the loop is not the clock: its 4 stalls were not heard.
        # Audio that waited on the loop would lose at least 200 ms less the buffer's delay
        # (under 100 ms) at each: 4 holes of 100 ms or more. The test's own PulseAudio, not
        # real-time, leaves a rare hole of its own in a recording of a null sink's monitor
        # (pacat alone into it, 40 ms queued: one of 70 ms in four 10 s runs), counted above.
        assert longest_ms < 100 and heard_ms < 200
    if load == "frozen receiver":  # the freezes were counted, at least as long as heard
        # give or take the realignment around each silence, as above, without the stream's
        # own underruns: one alignment for the whole recording, while each freeze moves what
        # follows it later until the delay control catches up, so a freeze is heard as a
        # few silences (CI runs: 4 silences, 55 ms heard, 1 gap of 76 ms counted; 6
        # silences, 95 ms heard, 2 gaps of 81 ms counted)
        assert stream["gaps"] >= 1 and stream["gap_ms"] >= heard_ms - 10 * heard


@pytest.mark.parametrize("pulse", ["pipewire"], indirect=True)
def test_after_pipewire_pulse_restarts_the_mic_comes_back_and_no_speaker_hears_it(
    tmp_path, udp_port, pulse
):
    """pipewire-pulse restarted under a running receiver takes the mic's modules with it:
    the receiver makes the mic again within 2 s, and a stream that starts then plays into
    it, never into the default output (the speakers: a null sink whose monitor is
    recorded); the stream's file gets it too."""
    folder = tmp_path / "receiver"
    folder.mkdir()
    wav = folder / "out.wav"
    receiver = ReceiverProcess(
        folder, udp_port, idle=None, sinks=("virtual", f"wav:{wav}"), env=pulse
    )
    receiver.wait_for("is ready")
    restart_pipewire_pulse(pulse)
    pactl(pulse, "load-module", "module-null-sink", "sink_name=speaker", "rate=48000",
          "channels=1", "format=s16le")  # fmt: skip
    pactl(pulse, "set-default-sink", "speaker")
    deadline = time.monotonic() + 2.0
    while "airmic" not in sources(pulse):
        assert time.monotonic() < deadline, receiver.stderr
        time.sleep(0.05)
    receiver.wait_for("is back")
    recorders = [
        Process(record_source(source, tmp_path / f"{source}.wav"), tmp_path, source, pulse)
        for source in ("speaker.monitor", "airmic")
    ]
    sender = send(udp_port, "--input", "tone:440", "--duration", "2", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    for recorder in recorders:
        recorder.stop()
    assert receiver.stop() == 0, receiver.stderr
    speakers = soundfile.read(tmp_path / "speaker.monitor.wav", dtype="float32")[0]
    assert len(speakers) > 48_000 and np.abs(speakers).max() < 1e-3  # silent
    mic = soundfile.read(tmp_path / "airmic.wav", dtype="float32")[0]
    spectrum = np.abs(np.fft.rfft(mic))
    assert abs(np.argmax(spectrum) * 48_000 / len(mic) - 440) < 2  # the tone, in the mic
    assert np.sum(np.abs(mic) > 0.05) > 1.5 * 48_000
    assert len(soundfile.read(wav, dtype="float32")[0]) > 1.5 * 48_000  # and in its file
    assert "Traceback" not in receiver.stderr
