"""Presets on simulated transducers, polarity on voices of known polarity, and the probe's
analysis naming the faults that were put in."""

import warnings

import numpy as np
import pytest
import soxr
from pesq import pesq
from pystoi import stoi

from airmic.common.audio import level_dbfs
from airmic.common.dsp import PRESETS
from airmic.common.dsp.analysis import TARGET_DB, analyse, recommend
from airmic.common.dsp.chain import build_chain
from airmic.common.dsp.polarity import estimate_polarity, find_clap
from tests.audio_match import best_lag
from tests.transducer import KINDS, clap, hum_level_db, simulate
from tests.voices import TEXTS, VOICES, glottal_voice

RATE = 48_000


def process(preset, x):
    chain = build_chain(PRESETS[preset])
    out = np.concatenate([chain.process(x[i : i + 480]) for i in range(0, len(x) - 479, 480)])
    return out, chain.latency


def scores(ref, out):
    """PESQ-WB and STOI at 16 kHz of `out` (aligned) against the clean `ref`."""
    lag = best_lag(np.abs(ref), np.abs(out), 4800)  # polarity-blind alignment
    out = out[lag:] if lag >= 0 else np.pad(out, (-lag, 0))
    out = np.pad(out[: len(ref)], (0, max(0, len(ref) - len(out))))
    ref16, out16 = soxr.resample(ref, RATE, 16000), soxr.resample(out, RATE, 16000)
    return pesq(16000, ref16, out16, "wb"), stoi(ref16, out16, 16000)


def active_level_db(x):
    x = x - np.mean(x)
    frames = x[: len(x) // 2400 * 2400].reshape(-1, 2400)
    levels = np.array([level_dbfs(f) for f in frames])
    loud = levels > levels.max() - 30
    return level_dbfs(frames[loud].ravel())


@pytest.fixture(scope="module")
def talk(speech_samples):
    # Two passes of the sentence after a second of room: time for hum detection and AGC.
    return np.concatenate([np.zeros(RATE), speech_samples, speech_samples]).astype(np.float32)


def test_speaker_preset_makes_a_speaker_driver_usable(talk):
    raw = simulate(talk, "speaker")
    out, _ = process("speaker", raw)
    # Scored on the second pass, once the adaptive stages have settled.
    half = len(talk) - len(talk) // 2 + RATE // 2
    ref = talk[half:]
    before = scores(ref, raw[half:])
    after = scores(ref, out[half:])
    print(
        f"speaker driver: PESQ-WB {before[0]:.2f} -> {after[0]:.2f}, "
        f"STOI {before[1]:.3f} -> {after[1]:.3f}"
    )
    assert after[0] > before[0] + 0.3
    assert after[1] > before[1] + 0.02
    # Hum: against the voice, at least 30 dB lower.
    hum_in, hum_out = hum_level_db(raw[half:]), hum_level_db(out[half:])
    print(f"hum against the voice: {hum_in:.1f} dB -> {hum_out:.1f} dB")
    assert hum_out < hum_in - 30
    # Level: at the preset's target, within 3 dB, and never a clipped sample.
    assert np.max(np.abs(out)) < 10 ** (-1 / 20) + 1e-6
    print(
        f"voice level {active_level_db(raw[half:]):.1f} dBFS -> {active_level_db(out[half:]):.1f}"
    )
    assert active_level_db(out[half:]) == pytest.approx(PRESETS["speaker"].agc, abs=3)


def test_mic_preset_is_transparent(talk):
    out, latency = process("mic", talk)
    delayed = talk[: len(out) - latency]
    # Only the 5 Hz DC blocker touches speech (a little phase, below 100 Hz).
    assert level_dbfs(out) == pytest.approx(level_dbfs(talk), abs=0.1)
    correlation = np.dot(out[latency:], delayed) / np.sqrt(
        np.dot(out, out) * np.dot(delayed, delayed)
    )
    assert correlation > 0.998


def test_polarity_from_the_voice_itself():
    right = 0
    for i, (voice, f0) in enumerate(VOICES):
        clip = glottal_voice(TEXTS[i % len(TEXTS)], voice, f0, seed=i)
        right += (estimate_polarity(clip).sign == 1) + (estimate_polarity(-clip).sign == -1)
    print(f"polarity right on {right} of {2 * len(VOICES)} clips")
    assert right >= 18  # at least 9 of 10, both ways


@pytest.mark.parametrize("kind", ["mic", "headphones", "earbuds", "speaker"])
def test_probe_names_the_faults_put_in(talk, kind):
    raw = simulate(talk, kind, mains=60.0, dc=0.01)
    report = analyse(raw)
    advice = recommend(report)
    assert advice.preset == kind
    assert report.hum is not None and report.hum.mains == 60
    assert report.dc == pytest.approx(0.01, abs=0.002)
    expected = (
        active_level_db(talk) + {"mic": 0, "headphones": -22, "earbuds": -26, "speaker": -30}[kind]
    )
    assert report.voice_db == pytest.approx(expected, abs=3)
    assert report.voice_db + advice.gain_db == pytest.approx(TARGET_DB, abs=6)
    assert report.clipped == 0
    if kind == "speaker":
        assert report.high_hz < 4500  # the treble loss is seen


def test_probe_sees_clipping_and_inverted_polarity():
    voice = glottal_voice(TEXTS[0] + " " + TEXTS[1], "en", 115)
    raw = simulate(voice, "speaker", dc=0.0)
    report = analyse(raw)
    assert report.polarity.sign == -1 and recommend(report).invert
    loud = np.clip(voice * 4, -1, 1)
    report = analyse(loud)
    assert report.clipped > 100
    assert any("clipped" in reason for reason in recommend(report).reasons)
    silent = analyse(np.random.default_rng(0).standard_normal(RATE * 3) * 1e-4)
    assert silent.voice_db is None and "no voice" in recommend(silent).reasons[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_clap_tells_the_polarity_where_the_voice_cannot(speech_samples, kind):
    """espeak's voice has no glottal pulse to read; a clap before it settles the polarity,
    through every transducer's phase response, either way round."""
    for seed, flip in ((0, 1), (1, -1), (2, 1), (3, -1)):
        quiet = np.zeros(RATE // 2)
        x = flip * np.concatenate([quiet, clap(seed), quiet, speech_samples])
        raw = simulate(x, kind, seed=seed, mains=60.0 if seed % 2 else 50.0)
        expected = flip * (-1 if KINDS[kind].invert else 1)
        found = find_clap(raw)
        assert found is not None and found.sign == expected
        assert found.at == pytest.approx(0.5, abs=0.005)
        report = analyse(raw)
        assert report.inverted == (expected < 0) and recommend(report).invert == (expected < 0)


def test_speech_alone_is_no_clap():
    """Plosives after a pause rise as fast as a clap; a vowel follows them, a clap's ring
    dies away."""
    for i, (voice, f0) in enumerate(VOICES):
        clip = glottal_voice(TEXTS[i % len(TEXTS)], voice, f0, seed=i)
        assert find_clap(clip) is None  # digital silence between words, the hardest case
        assert find_clap(simulate(clip, "speaker", seed=i)) is None


def test_digital_silence_is_said_plainly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the terminal
        report = analyse(np.zeros(RATE * 3, dtype=np.float32))
        advice = recommend(report)
    assert report.silent and report.voice_db is None and report.clap is None
    assert "no sound at all" in advice.reasons[0]
