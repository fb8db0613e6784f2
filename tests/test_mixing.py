"""Dynamic mixing: deterministic per (seed, epoch, index), resumable, rank-disjoint,
exact SNRs, and babble / speech-shaped noise from training speakers only."""
import glob
import os

import numpy as np
import pytest
import torch
from conftest import MINI_SET, speech_and_noise_folders

from speechbrain_sslse.mixing import DynamicMixDataset, active_level
from speechbrain_sslse.simulation import simulate

CLEAN = sorted(glob.glob(os.path.join(MINI_SET, "clean_*", "*.wav")))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A simulated set with speaker-disjoint valid and test splits, from 5 one-folder
    speakers of real speech and 5 synthetic noises."""
    root = tmp_path_factory.mktemp("dm")
    speech, noise = speech_and_noise_folders(root, speakers=5, noises=5)
    sim = simulate([speech], [noise], str(root / "set"), test_fraction=0.2,
                   noise_test_fraction=0.2, valid_fraction=0.25, noise_valid_fraction=0.25)
    return root, sim


def _dataset(rendered, **kw):
    root, _ = rendered
    opts = dict(items_per_epoch=12, babble_tracks=2, ssn_tracks=1)
    opts.update(kw)
    return DynamicMixDataset.from_simulation(str(root / "set" / "simulation.json"), **opts)


def _epoch(ds, epoch, indices):
    ds.set_epoch(epoch)
    return [ds[i] for i in indices]


def _same(a, b):
    return all(torch.equal(x["noisy_sig"], y["noisy_sig"]) and torch.equal(x["clean_sig"], y["clean_sig"])
               for x, y in zip(a, b))


def test_same_seed_epoch_index_gives_the_same_mixture(rendered):
    a, b = _dataset(rendered), _dataset(rendered)
    assert _same(_epoch(a, 3, range(12)), _epoch(b, 3, range(12)))
    assert not _same(_epoch(a, 3, range(12)), _epoch(a, 4, range(12)))  # a new epoch, new mixtures
    other_seed = _dataset(rendered, seed=1)
    assert not _same(_epoch(a, 3, range(12)), _epoch(other_seed, 3, range(12)))


def test_a_resumed_epoch_sees_the_mixtures_of_an_uninterrupted_run(rendered):
    straight = _dataset(rendered)
    _epoch(straight, 1, range(12))
    order = [5, 2, 9, 0, 11]  # whatever order the sampler gives after the restart
    uninterrupted = _epoch(straight, 2, order)
    resumed = _dataset(rendered)  # a new process: only the epoch is recovered
    assert _same(uninterrupted, _epoch(resumed, 2, order))


@pytest.mark.parametrize("kind", ["dynamic mixing", "static set"])
def test_ranks_draw_different_examples(rendered, kind):
    """Dynamic mixtures (DynamicMixDataset) and static-set crops (EpochCrops) alike."""
    from speechbrain_sslse.data import EpochCrops

    ds = _dataset(rendered, items_per_epoch=16) if kind == "dynamic mixing" else EpochCrops(_pairs(4), seed=999, repeats=4)
    ds.set_epoch(1)
    drawn = []
    for rank in (0, 1):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=999)
        sampler.set_epoch(1)
        drawn.append([ds[i]["noisy_sig"] for i in sampler])
    assert len(drawn[0]) == len(drawn[1]) == 8
    assert not any(torch.equal(x, y) for x in drawn[0] for y in drawn[1])


def _assert_snr_as_drawn(m: dict) -> None:
    """The mixture's SNR, measured on its clean speech's active level, within 0.1 dB of the draw."""
    measured = 10 * np.log10(active_level(m["clean"]) / np.mean((m["noisy"] - m["clean"]) ** 2))
    assert abs(measured - m["snr_db"]) < 0.1, (m["id"], measured, m["snr_db"])


def test_generated_snrs_are_within_a_tenth_of_a_db(rendered):
    # utterances cut to 1 s and 1 s crops: the crop is the whole utterance whose level sets the SNR
    ds = _dataset(rendered, items_per_epoch=40, babble_tracks=0, ssn_tracks=0, max_seconds=1.0, crop=16000)
    for i in range(40):
        m = ds.mixture(i)
        _assert_snr_as_drawn(m)
        assert m["snr_db"] in (0.0, 5.0, 10.0, 15.0)


def test_uniform_snr_range_is_respected(rendered):
    ds = _dataset(rendered, snr_range=(-5.0, 20.0))
    snrs = [ds.mixture(i)["snr_db"] for i in range(12)]
    assert all(-5.0 <= s <= 20.0 for s in snrs) and len(set(snrs)) == 12


def test_babble_and_ssn_use_training_speakers_only(rendered):
    root, sim = rendered
    ds = _dataset(rendered, babble_tracks=4, ssn_tracks=2)
    held_out = {os.path.abspath(e["speech"]) for subset in ("valid", "test") for e in sim[subset]}
    assert held_out and sim["valid"] and sim["test"]
    assert set(ds.speech_files) == set(sim["train_speech"])
    assert not set(ds.speech_files) & held_out
    assert {n for n in ds.noise_names if n.startswith(("babble", "ssn"))} == set(ds.artificial_sources)
    for name, sources in ds.artificial_sources.items():
        assert sources and not set(sources) & held_out, name
    # and no held-out noise recording is drawn from
    held_noises = set(sim["valid_noises"]) | set(sim["test_noises"])
    assert not {os.path.basename(n) for n in ds.noise_names} & held_noises


def test_mixtures_are_crops_of_the_training_length(rendered):
    ds = _dataset(rendered, crop=8000)
    item = ds[0]
    assert item["noisy_sig"].shape == item["clean_sig"].shape == (8000,)
    assert item["noisy_sig"].dtype == torch.float32


AUGMENT = dict(noise_speed_range=(0.8, 1.25), noise_eq_db=6.0, second_noise_prob=0.5)


def test_noise_augmentation_is_deterministic_and_keeps_the_plain_draws(rendered):
    """Augmented mixtures follow (seed, epoch, index) like plain ones, keep the plain draws
    (speech crop, noise, SNR, gain), differ from them only in the noise, and the SNR is set
    on the noise as mixed."""
    plain, a, b = _dataset(rendered), _dataset(rendered, **AUGMENT), _dataset(rendered, **AUGMENT)
    assert _same(_epoch(a, 2, range(12)), _epoch(b, 2, range(12)))
    plain.set_epoch(2)
    two = 0
    for i in range(12):
        p, m = plain.mixture(i), a.mixture(i)
        assert (m["snr_db"], m["gain"], m["speech"]) == (p["snr_db"], p["gain"], p["speech"])
        assert m["noise"].split("+")[0] == p["noise"]
        assert not np.allclose(m["noisy"], p["noisy"])
        two += "+" in m["noise"]
    assert 0 < two < 12  # about half the mixtures hold a second, different noise
    ds = _dataset(rendered, babble_tracks=0, ssn_tracks=0, max_seconds=1.0, crop=16000, **AUGMENT)
    for i in range(20):
        m = ds.mixture(i)
        assert len(set(m["noise"].split("+"))) == len(m["noise"].split("+"))
        _assert_snr_as_drawn(m)


def test_noise_speed_and_eq_change_the_spectrum_as_asked():
    from speechbrain_sslse.mixing import random_eq, speed_segment
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t)
    fast = speed_segment(tone, 16000, 0, 1.25)
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * 16000 / len(fast)
    assert abs(peak - 1250) < 2
    slow = speed_segment(tone, 16000, 0, 0.8)
    assert abs(np.argmax(np.abs(np.fft.rfft(slow))) * 16000 / len(slow) - 800) < 2
    white = rng.standard_normal(16000)
    eq = random_eq(white, 6.0, np.random.default_rng(1))
    ratio_db = 10 * np.log10(np.abs(np.fft.rfft(eq)) ** 2 / np.maximum(np.abs(np.fft.rfft(white)) ** 2, 1e-12))
    assert np.abs(ratio_db).max() <= 6.0 + 1e-6 and np.ptp(ratio_db) > 1.0  # coloured, within the bound
    assert abs(10 * np.log10(np.mean(eq[:8000] ** 2) / np.mean(white[:8000] ** 2))) < 6.0
    for bad in ((0.0, 1.0), (1.2,), (0.8, 1.0, 1.2), (0.8, float("inf"))):
        with pytest.raises(ValueError, match="noise_speed_range"):
            _dataset_args_check(noise_speed_range=bad)
    with pytest.raises(ValueError, match="noise_eq_db"):
        _dataset_args_check(noise_eq_db=float("nan"))


def _dataset_args_check(**kw):
    DynamicMixDataset(["x.wav"], ["n.wav"], 4, **kw)


def test_a_second_noise_needs_two_noises(rendered):
    root, sim = rendered
    import json
    spec = json.load(open(root / "set" / "simulation.json"))
    with pytest.raises(ValueError, match="at least two training noises"):
        DynamicMixDataset(spec["train_speech"], spec["train_noise_files"][:1], 4, second_noise_prob=0.3)


SPEECH_AUGMENT = dict(speech_speed_range=(0.9, 1.1), speech_eq_db=6.0)


def test_speech_augmentation_is_deterministic_keeps_the_plain_draws_and_the_snr(rendered):
    plain, a, b = _dataset(rendered), _dataset(rendered, **SPEECH_AUGMENT), _dataset(rendered, **SPEECH_AUGMENT)
    assert _same(_epoch(a, 2, range(12)), _epoch(b, 2, range(12)))
    plain.set_epoch(2)
    for i in range(12):
        p, m = plain.mixture(i), a.mixture(i)
        assert (m["snr_db"], m["gain"], m["speech"], m["noise"]) == (p["snr_db"], p["gain"], p["speech"], p["noise"])
        assert m["clean"].shape == p["clean"].shape and not np.allclose(m["clean"], p["clean"])
    # EQ keeps the speech level: with the crop = the whole (1 s) utterance, the SNR measured
    # on it as mixed is the target (speed keeps the level too: see the next test; a sped crop
    # no longer covers exactly the utterance whose level is the reference)
    ds = _dataset(rendered, babble_tracks=0, ssn_tracks=0, max_seconds=1.0, crop=16000, speech_eq_db=6.0)
    for i in range(20):
        _assert_snr_as_drawn(ds.mixture(i))
    # at speed 1 without EQ the augmented path gives the plain crop and level, bit for bit
    neutral = _dataset(rendered, speech_speed_range=(1.0, 1.0))
    neutral.set_epoch(2)
    assert _same(_epoch(neutral, 2, range(12)), _epoch(plain, 2, range(12)))


def test_speech_speed_moves_pitch_and_filters_what_would_fold_over():
    from speechbrain_sslse.mixing import speed_speech
    t = np.arange(48000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t)
    for factor in (0.9, 1.1):
        for start in (20000, 47000):  # near the end: the span moves back, nothing wraps around
            out = speed_speech(tone, 16000, start, factor)
            assert out.shape == (16000,)
            spectrum = np.abs(np.fft.rfft(out * np.hanning(16000)))
            assert abs(np.argmax(spectrum) - 1000 * factor) < 2
            step = 2 * np.pi * 1000 * factor / 16000  # largest sample-to-sample change of the sped tone
            assert np.abs(np.diff(out)).max() < 1.05 * step  # no splice, no filter edge inside
            assert abs(10 * np.log10(np.mean(out**2) / 0.5)) < 0.05  # the level is kept
    high = np.sin(2 * np.pi * 7600 * t)  # 1.25 x: 9.5 kHz, filtered, not folded back to 6.5 kHz
    assert np.sqrt(np.mean(speed_speech(high, 16000, 0, 1.25) ** 2)) < 0.01 * np.sqrt(np.mean(high**2))
    with pytest.raises(ValueError, match="speech_speed_range"):
        _dataset_args_check(speech_speed_range=(1.1, 0.9))
    with pytest.raises(ValueError, match="speech_eq_db"):
        _dataset_args_check(speech_eq_db=-1.0)


def test_ranks_get_their_own_global_streams():
    """SpeechBrain seeds every DDP rank alike; after separate_rank_streams each rank > 0 draws
    other global random numbers (dropout, an encoder's time masking) than rank 0, and rank 0
    keeps the single-process stream."""
    import torch
    from speechbrain.utils import seed_everything

    from speechbrain_sslse.data import separate_rank_streams

    def draws(rank):
        seed_everything(999, verbose=False)
        separate_rank_streams(999, rank)
        return torch.rand(4).tolist()

    seed_everything(999, verbose=False)
    single = torch.rand(4).tolist()
    assert draws(0) == single
    assert draws(1) != single and draws(2) != draws(1) and draws(1) == draws(1)


def _pairs(n=3, length=30000):
    ramp = torch.arange(length, dtype=torch.float64) / length
    return [{"id": f"u{k}", "noisy_sig": ramp + k, "clean_sig": -ramp - k} for k in range(n)]


def _crops(ds, epoch, indices):
    ds.set_epoch(epoch)
    return [ds[i] for i in indices]


def test_static_set_crops_are_a_function_of_seed_epoch_and_index():
    """The static training set (EpochCrops): a resumed run (a new process) draws the crops and
    gains of an uninterrupted one; each epoch, each repeat and each seed draws others."""
    from speechbrain_sslse.data import EpochCrops

    straight = EpochCrops(_pairs(), crop=20480, gain_range=(1.0, 2.5), seed=999, repeats=2)
    assert len(straight) == 6
    _crops(straight, 1, range(6))
    order = [4, 1, 5, 0]
    uninterrupted = _crops(straight, 2, order)
    resumed = EpochCrops(_pairs(), crop=20480, gain_range=(1.0, 2.5), seed=999, repeats=2)
    assert _same(uninterrupted, _crops(resumed, 2, order))
    assert not _same(uninterrupted, _crops(resumed, 3, order))
    other_seed = EpochCrops(_pairs(), crop=20480, gain_range=(1.0, 2.5), seed=1, repeats=2)
    assert not _same(uninterrupted, _crops(other_seed, 2, order))
    for item in _crops(straight, 2, range(6)):  # one window of the pair, one gain for both
        noisy, clean = item["noisy_sig"], item["clean_sig"]
        gain = float(noisy[1] - noisy[0]) * 30000
        assert len(noisy) == len(clean) == 20480 and 1.0 <= gain < 2.5
        assert torch.equal(clean, -noisy) and torch.allclose(noisy.diff() * 30000, torch.full((20479,), gain,
                                                                                               dtype=torch.float64))
    first, repeat = _crops(straight, 2, [0, 3])  # the same pair, two different crops
    assert first["id"] == repeat["id"] and not torch.equal(first["noisy_sig"], repeat["noisy_sig"])


def test_a_noise_with_a_gap_of_digital_silence_never_gives_a_noiseless_mixture(tmp_path):
    """A recording with seconds of exact zeros (an edited or paused recording): a crop inside
    the gap held no noise, and its mixture was clean speech labelled with a drawn SNR."""
    import soundfile as sf

    from speechbrain_sslse.mixing import without_digital_silence

    rng = np.random.default_rng(0)
    gap = np.concatenate([0.1 * rng.standard_normal(8000), np.zeros(64000), 0.1 * rng.standard_normal(8000)])
    sf.write(tmp_path / "gap.wav", gap, 16000, subtype="FLOAT")
    short = 0.1 * rng.standard_normal(16000)
    short[100:400] = 0  # a short run of zeros (a click removed) stays
    assert len(without_digital_silence(short)) == len(short)
    ds = DynamicMixDataset(CLEAN[:3], [str(tmp_path / "gap.wav")], items_per_epoch=40, crop=20480)
    assert len(ds.noises[0]) == 16000
    for i in range(40):
        m = ds.mixture(i)
        assert np.abs(m["noisy"] - m["clean"]).max() > 0, (i, m["snr_db"])
