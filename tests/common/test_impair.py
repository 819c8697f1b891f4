import itertools
import statistics

import pytest

from airmic.common.impair import PROFILES, Profile, apply, profile

SENT = [(i * 0.01, i) for i in range(20_000)]  # 200 s of 10 ms packets


def arrived_ids(trace):
    return [item for _, item in trace]


def test_same_seed_same_trace_other_seed_other_trace():
    for p in PROFILES.values():
        assert apply(p, SENT[:3000], seed=5) == apply(p, SENT[:3000], seed=5)
    lossy = PROFILES["loss-5"]
    assert apply(lossy, SENT[:3000], seed=5) != apply(lossy, SENT[:3000], seed=6)


def test_clean_changes_nothing():
    assert apply(PROFILES["clean"], SENT) == SENT


def test_random_loss_rate():
    trace = apply(Profile(loss=0.05), SENT, seed=1)
    assert 0.045 < 1 - len(trace) / len(SENT) < 0.055


def test_bursty_loss_rate_and_burst_length():
    kept = set(arrived_ids(apply(PROFILES["bursty-10"], SENT, seed=2)))
    lost = [i not in kept for i in range(len(SENT))]
    bursts = [len(list(g)) for k, g in itertools.groupby(lost) if k]
    assert 0.08 < sum(lost) / len(lost) < 0.12
    assert 2.5 < statistics.mean(bursts) < 3.5  # random loss at 10 % would give 1.1


@pytest.mark.parametrize("dist", ["exponential", "normal", "uniform", "pareto"])
def test_jitter_keeps_order_and_never_arrives_early(dist):
    trace = apply(Profile(delay=0.002, jitter=0.004, jitter_dist=dist), SENT[:5000], seed=3)
    assert arrived_ids(trace) == list(range(5000))  # FIFO: no reordering by jitter alone
    delays = [t - i * 0.01 for t, i in trace]
    assert min(delays) >= 0.002
    assert statistics.median(delays) > 0.003


def test_wifi_good_jitter_p99_is_about_15_ms():
    trace = apply(PROFILES["wifi-good"], SENT, seed=4)
    delays = sorted(t - i * 0.01 for t, i in trace)
    p99 = delays[int(0.99 * len(delays))] - delays[0]
    assert 0.010 < p99 < 0.020


def test_reordering_and_duplication():
    trace = apply(Profile(jitter=0.01, reorder=0.2, duplicate=0.05), SENT[:5000], seed=5)
    ids = arrived_ids(trace)
    assert ids != sorted(ids)
    assert 0.04 < (len(ids) - len(set(ids))) / 5000 < 0.06


def test_power_save_stalls_then_bursts():
    trace = apply(PROFILES["wifi-powersave"], SENT[:6000], seed=6)  # 60 s
    times = [t for t, _ in trace]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    stalls = [g for g in gaps if g > 0.04]
    assert 60 / 1.55 < len(stalls) < 60 / 0.6  # one every 0.6 to 1.5 s (+ its own length)
    assert max(stalls) <= 0.2 + 0.011 and min(stalls) >= 0.05 - 0.011
    bursts = [g for g in gaps if g < 0.002]
    assert len(bursts) > 4 * len(stalls)  # the held packets come out back to back
    assert arrived_ids(trace) == list(range(6000))  # held, never lost


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="known: clean"):
        profile("lte")
    assert profile("loss-5", loss=0.1).loss == 0.1
