"""Each stage on synthetic signals: responses as designed, ceilings kept, state carried."""

import numpy as np
import pytest

from airmic.common.dsp import PRESETS, EqBand
from airmic.common.dsp.chain import build_chain
from airmic.common.dsp.dynamics import SUB, Agc, Compressor, Gate, Limiter
from airmic.common.dsp.filters import SosFilter, band_sos, dc_blocker, high_pass
from airmic.common.dsp.hum import HumFilter, detect_hum

RATE = 48_000


def blocks(x, size=480):
    return [x[i : i + size] for i in range(0, len(x), size)]


def run(stage, x, size=480):
    return np.concatenate([stage.process(b) for b in blocks(x, size)])


def sine(freq, seconds=1.0, amplitude=0.1):
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * RATE)) / RATE)


def measured_gain_db(stage, freq):
    """A steady sine through the stage, block by block; gain over the last half."""
    x = sine(freq, 2.0)
    y = run(stage, x)
    half = len(x) // 2
    return 20 * np.log10(np.std(y[half:]) / np.std(x[half:]))


BANDS = [
    EqBand("low-shelf", 200, -6.0),
    EqBand("peak", 1000, 9.0, 2.0),
    EqBand("peak", 3000, -4.0, 0.7),
    EqBand("high-shelf", 6000, 8.0),
]


@pytest.mark.parametrize("band", BANDS, ids=str)
def test_eq_band_response_matches_its_design_in_a_sweep(band):
    design = SosFilter("eq", band_sos(band))
    for freq in (50, 200, 500, 1000, 2000, 3000, 6000, 12000):
        measured = measured_gain_db(SosFilter("eq", band_sos(band)), freq)
        assert measured == pytest.approx(design.response_db([freq])[0], abs=0.05)
    # The design itself: the asked gain at a peak's centre and far past a shelf's corner.
    if band.kind == "peak":
        assert design.response_db([band.freq])[0] == pytest.approx(band.gain_db, abs=0.01)
    else:
        far = 20 if band.kind == "low-shelf" else 22_000
        assert design.response_db([far])[0] == pytest.approx(band.gain_db, abs=0.3)
        assert design.response_db([band.freq])[0] == pytest.approx(band.gain_db / 2, abs=0.01)


def test_high_pass_and_dc_blocker_responses():
    hp = SosFilter("hp", high_pass(120))
    assert measured_gain_db(SosFilter("hp", high_pass(120)), 120) == pytest.approx(-3.01, abs=0.05)
    assert measured_gain_db(SosFilter("hp", high_pass(120)), 30) < -23  # 12 dB per octave
    assert hp.response_db([1000])[0] == pytest.approx(0, abs=0.1)
    dc = SosFilter("dc", dc_blocker())
    y = run(dc, np.full(RATE * 2, 0.3) + sine(100, 2.0))
    assert abs(np.mean(y[RATE:])) < 1e-3  # the offset is gone, the tone is not
    assert np.std(y[RATE:]) == pytest.approx(0.1 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize(
    "text,kind,freq,gain,q",
    [
        ("presence:+6dB@3k", "peak", 3000, 6, 1.0),
        ("low-shelf:-4dB@200", "low-shelf", 200, -4, 0.707),
        ("peak:-3.5dB@350Hz/1.4", "peak", 350, -3.5, 1.4),
        ("high:+8 dB @ 4.5k", "high-shelf", 4500, 8, 0.707),
        ("+3dB@1k", "peak", 1000, 3, 1.0),
    ],
)
def test_eq_band_parses(text, kind, freq, gain, q):
    assert EqBand.parse(text) == EqBand(kind, freq, gain, q)


@pytest.mark.parametrize(
    "text", ["presence:+6@3k", "treble:+3dB@3k", "peak:+40dB@1k", "peak:+3dB@30k", ""]
)
def test_eq_band_refuses_nonsense(text):
    with pytest.raises(ValueError):
        EqBand.parse(text)


def test_limiter_never_exceeds_its_ceiling():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(RATE * 2) * 0.5  # peaks far above full scale
    x[RATE // 2 : RATE // 2 + 3] = [4.0, -5.0, 3.0]  # and single-sample spikes
    limiter = Limiter(ceiling_db=-1.0)
    y = run(limiter, x)
    ceiling = 10 ** (-1 / 20)
    assert np.max(np.abs(y)) <= ceiling + 1e-12
    # Nothing to do below the ceiling: the signal comes out delayed, untouched.
    quiet = 0.3 * np.sin(np.arange(RATE) * 0.05)
    out = run(Limiter(), quiet)
    np.testing.assert_allclose(out[Limiter.latency :], quiet[: -Limiter.latency], atol=1e-12)


def test_limiter_holds_a_loud_tone_at_the_ceiling_without_clipping_it():
    y = run(Limiter(ceiling_db=-6.0), sine(1000, 1.0, amplitude=1.0))
    peak = np.max(np.abs(y[RATE // 2 :]))
    assert 10 ** (-6.5 / 20) < peak <= 10 ** (-6 / 20) + 1e-12


def test_gate_hysteresis_and_hold():
    gate = Gate(open_db=-40, close_db=-50, hold=0.1, range_db=-30)
    levels = [(-60, 0.3), (-45, 0.3), (-35, 0.3), (-45, 0.5), (-55, 0.05), (-45, 0.3), (-55, 0.5)]
    state = []
    for db, seconds in levels:
        tone = sine(440, seconds, amplitude=10 ** (db / 20))  # RMS dBFS as level_dbfs
        for b in blocks(tone):
            gate.process(b)
        state.append(gate.is_open)
    # -45 dB is between the thresholds: it neither opens the gate nor closes it; 50 ms
    # below the close threshold is within the hold; half a second is not.
    assert state == [False, False, True, True, True, True, False]


def test_gate_attenuates_by_its_range_when_closed():
    x = sine(440, 1.0, amplitude=10 ** (-60 / 20))
    y = run(Gate(open_db=-40, close_db=-50, range_db=-30), x)
    assert 20 * np.log10(np.std(y[RATE // 2 :]) / np.std(x[RATE // 2 :])) == pytest.approx(
        -30, abs=0.5
    )


def test_compressor_slope_above_threshold():
    def out_db(in_db):
        x = sine(1000, 1.0, amplitude=10 ** (in_db / 20))
        y = run(Compressor(threshold_db=-30, ratio=4), x)
        return 20 * np.log10(np.std(y[RATE // 2 :]) * np.sqrt(2))

    assert out_db(-40) == pytest.approx(-40, abs=0.5)  # below: untouched
    assert out_db(-10) - out_db(-20) == pytest.approx(2.5, abs=0.5)  # 10 dB in, 2.5 out


def test_agc_brings_quiet_and_loud_voices_to_the_target():
    for level in (-45, -10):
        # A voice-like signal: bursts of tone with pauses between.
        burst = np.concatenate([sine(300, 0.4, 10 ** (level / 20)), np.zeros(RATE // 5)])
        x = np.tile(burst, 15)
        y = run(Agc(target_db=-20, max_gain_db=30), x)
        tail = y[-RATE * 3 :]
        active = tail[np.abs(tail) > 1e-4]
        assert 20 * np.log10(np.std(active) * np.sqrt(2)) == pytest.approx(-20, abs=1.5)


def test_hum_found_and_notched_with_the_voice_kept():
    t = np.arange(RATE * 3) / RATE
    hum = 0.01 * np.sin(2 * np.pi * 59.98 * t) + 0.006 * np.sin(2 * np.pi * 179.94 * t)
    voice = sine(1000, 3.0, 0.05)
    found = detect_hum(hum + voice)
    assert found is not None and found.mains == 60
    assert found.freqs[0] == pytest.approx(59.98, abs=0.03)
    stage = HumFilter()
    y = run(stage, hum + voice)
    after = slice(2 * RATE, None)  # a second of listening, then the notches settle

    def amplitude(x, freq):  # lock-in: the tone's amplitude, blind to the others
        n = np.arange(len(x))[after] / RATE
        return 2 * abs(np.mean(x[after] * np.exp(-2j * np.pi * freq * n)))

    for freq in (59.98, 179.94):
        assert 20 * np.log10(amplitude(y, freq) / amplitude(hum, freq)) < -30
    assert amplitude(y, 1000) == pytest.approx(0.05, rel=0.001)
    assert detect_hum(np.random.default_rng(0).standard_normal(RATE) * 0.01) is None


@pytest.mark.parametrize("preset", list(PRESETS))
def test_blocks_give_what_one_piece_gives(preset, speech_samples):
    x = speech_samples[: RATE * 3].astype(np.float32) * 0.05
    x[RATE : RATE + 10] = 0.9  # something for the limiter too
    pieces = {}
    for size in (480, 960, 48_000):  # multiples of 10 ms, the noise suppressor's unit
        chain = build_chain(PRESETS[preset])
        pieces[size] = np.concatenate([chain.process(b) for b in blocks(x, size)])
    np.testing.assert_allclose(pieces[480], pieces[48_000], atol=1e-6)
    np.testing.assert_allclose(pieces[960], pieces[48_000], atol=1e-6)


def test_dynamics_are_exact_across_sub_block_sizes():
    x = np.random.default_rng(1).standard_normal(RATE) * 0.3
    for stage_type in (Gate, Compressor, Agc, Limiter):
        a = run(stage_type(), x, SUB * 5)  # 2.5 ms blocks
        b = run(stage_type(), x, SUB * 40)  # 20 ms blocks
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_settings_from_a_preset_overrides_and_a_saved_file(tmp_path):
    from airmic.common.dsp.presets import load_config, settings
    from airmic.common.errors import UsageError

    s = settings("speaker", {"gain": "34dB", "invert": True, "eq": "presence:+4dB@3.5k"})
    assert (s.gain_db, s.invert, s.eq) == (34.0, True, (EqBand("peak", 3500, 4.0, 1.0),))
    assert s.denoise == PRESETS["speaker"].denoise and s.hum == "auto"  # the rest kept
    assert settings("mic", {"hum": 50, "denoise": False, "agc": "-18dB"}).hum == "50"
    config = tmp_path / "setup.toml"
    config.write_text(
        '[dsp]\npreset = "earbuds"\ngain = "28dB"\ngate = false\nhighpass = "150Hz"\n'
    )
    preset, overrides = load_config(config)
    saved = settings(preset, overrides)
    assert (saved.gain_db, saved.gate, saved.highpass) == (28.0, False, 150.0)
    assert saved.eq == PRESETS["earbuds"].eq
    for preset, bad in [
        ("loud", {}),
        ("mic", {"gain": "lots"}),
        ("mic", {"denoise": 7}),
        ("mic", {"gate": "yes"}),
        ("mic", {"volume": 3}),
    ]:
        with pytest.raises(UsageError):
            settings(preset, bad)
    config.write_text("preset = ")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(config)
