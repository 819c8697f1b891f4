import numpy as np
import opuslib_next
import pytest

from airmic.common.opus import OpusConfig, OpusDecoder, OpusEncoder, packet_samples
from tests.audio_match import match


def encode_all(samples: np.ndarray, config: OpusConfig) -> list[bytes]:
    encoder = OpusEncoder(config)
    n = config.frame_samples
    return [encoder.encode(samples[i : i + n]) for i in range(0, len(samples) - n + 1, n)]


@pytest.mark.parametrize("frame_ms", [2.5, 5.0, 10.0, 20.0])
@pytest.mark.parametrize("low_latency", [False, True])
def test_round_trip_reproduces_speech(speech_samples, frame_ms, low_latency):
    config = OpusConfig(frame_ms=frame_ms, low_latency=low_latency, bitrate=64_000)
    decoder = OpusDecoder()
    out = np.concatenate([decoder.decode(p) for p in encode_all(speech_samples, config)])
    result = match(speech_samples, out)
    assert result.correlation > 0.9
    # Opus delays by its look-ahead: 6.5 ms in VOIP mode, 2.5 ms in low-delay mode.
    assert abs(result.lag - OpusEncoder(config).lookahead) <= 8


def test_fec_recovers_a_lost_packet_better_than_concealment(speech_samples):
    config = OpusConfig()  # 10 ms, VOIP, FEC tuned for 10 % loss
    packets = encode_all(speech_samples, config)
    n = config.frame_samples
    delay = OpusEncoder(config).lookahead
    lost = set(range(20, len(packets) - 1, 15))

    def decode_with_loss(use_fec: bool) -> np.ndarray:
        decoder = OpusDecoder()
        out = []
        for i, packet in enumerate(packets):
            if i not in lost:
                out.append(decoder.decode(packet))
            elif use_fec:
                out.append(decoder.recover(packets[i + 1], n))
            else:
                out.append(decoder.conceal(n))
        return np.concatenate(out)

    def error(out: np.ndarray) -> float:
        """Squared error against the input, over the lost frames only."""
        return sum(
            float(
                np.sum(
                    (out[i * n : (i + 1) * n] - speech_samples[i * n - delay : (i + 1) * n - delay])
                    ** 2
                )
            )
            for i in lost
        )

    fec, plc = error(decode_with_loss(True)), error(decode_with_loss(False))
    assert fec < 0.75 * plc, (fec, plc)


def test_encoder_defaults_match_the_design():
    encoder = OpusEncoder(OpusConfig())
    raw = encoder._encoder
    assert raw.inband_fec == 1
    assert raw.packet_loss_perc == 10
    assert raw.dtx == 0
    assert raw.application == opuslib_next.APPLICATION_VOIP
    low = OpusEncoder(OpusConfig(low_latency=True))._encoder
    assert low.application == opuslib_next.APPLICATION_RESTRICTED_LOWDELAY


@pytest.mark.parametrize("application", ["voip", "restricted_lowdelay"])
@pytest.mark.parametrize("duration_ms", [2.5, 10, 20, 40, 60])
def test_packet_samples_reads_every_frame_packing(application, duration_ms):
    n = round(duration_ms * 48)
    encoder = opuslib_next.Encoder(48_000, 1, application)
    tone = (np.sin(np.arange(n) * 0.05) * 8000).astype(np.int16)
    packet = bytes(encoder.encode(tone.tobytes(), n))
    assert packet_samples(packet) == n
    assert len(OpusDecoder().decode(packet)) == n


def test_multi_frame_packets_of_codes_1_2_3_decode_whole():
    noise = (np.random.default_rng(0).standard_normal(2880) * 3000).astype(np.int16).tobytes()
    codes = {}
    for application, n in [("restricted_lowdelay", 1920), ("voip", 1920), ("voip", 2880)]:
        packet = bytes(opuslib_next.Encoder(48_000, 1, application).encode(noise[: 2 * n], n))
        codes[packet[0] & 3] = packet
        assert len(OpusDecoder().decode(packet)) == packet_samples(packet) == n
    assert set(codes) == {1, 2, 3}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([0x03]),
        bytes([0x03, 0x00]),
        bytes([0x03, 0xFF]) + bytes(10),
        bytes([0x02, 0xFF]),
        bytes([0x01, 0x01, 0x02, 0x03]),
        bytes([0x03, 0x82]),
    ],
    ids=[
        "empty",
        "code3-no-count",
        "code3-zero-frames",
        "code3-over-120ms",
        "code2-truncated-length",
        "code1-odd-length",
        "code3-vbr-truncated",
    ],
)
def test_packet_samples_refuses_malformed_packets(payload):
    with pytest.raises(ValueError):
        packet_samples(payload)


def test_decoder_refuses_corrupt_packet_with_value_error():
    with pytest.raises(ValueError):
        OpusDecoder().decode(bytes([0x02, 0xC8, 0x01, 0x02]))


def test_concealment_continues_the_signal():
    decoder = OpusDecoder()
    tone = (np.sin(np.arange(480 * 20) * 2 * np.pi * 300 / 48_000) * 0.3).astype(np.float32)
    for packet in encode_all(tone, OpusConfig()):
        decoder.decode(packet)
    concealed = decoder.conceal(480)
    assert len(concealed) == 480
    assert np.sqrt(np.mean(concealed**2)) > 0.05  # not silence: the tone goes on
