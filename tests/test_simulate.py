"""simulation (simulate_vbd.py): disjoint splits, active-level SNRs, real pair noise in training only."""
import glob
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import MINI_SET, speech_and_noise_folders

from speechbrain_sslse.mixing import TEST_SNRS, TRAIN_SNRS, active_level, pair_noises
from speechbrain_sslse.simulation import simulate

TRAIN_CLEAN = os.path.join(MINI_SET, "clean_trainset_28spk_wav")
TRAIN_NOISY = os.path.join(MINI_SET, "noisy_trainset_28spk_wav")
PAIRS = f"{TRAIN_CLEAN}:{TRAIN_NOISY}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Four one-folder "speakers" of real clean speech and four synthetic noises."""
    return speech_and_noise_folders(tmp_path_factory.mktemp("sources"), speakers=4, noises=4)


def _read(folder, uid):
    return sf.read(os.path.join(folder, uid + ".wav"), dtype="float64")[0]


def test_splits_are_disjoint_and_snrs_hold(sources, tmp_path):
    s = simulate([sources[0]], [sources[1]], str(tmp_path), test_fraction=0.25, noise_test_fraction=0.25)
    assert not {e["speaker"] for e in s["train"]} & {e["speaker"] for e in s["test"]}
    assert not set(s["train_noises"]) & set(s["test_noises"])
    assert {e["noise"] for e in s["test"]} <= set(s["test_noises"])
    for subset, snrs, dirs in (("train", TRAIN_SNRS, ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav")),
                               ("test", TEST_SNRS, ("clean_testset_wav", "noisy_testset_wav"))):
        for e in s[subset]:
            assert e["snr_db"] in snrs
            clean, noisy = (_read(tmp_path / d, e["id"]) for d in dirs)
            noise = noisy - clean
            measured = 10 * np.log10(active_level(clean) / np.mean(noise**2))
            assert abs(measured - e["snr_db"]) < 0.1, (e, measured)  # PCM16 rounding only


def test_pair_noise_is_noisy_minus_clean():
    noises = pair_noises(PAIRS)
    assert sorted(noises) == [f"pair:{os.path.basename(p)}" for p in sorted(glob.glob(TRAIN_NOISY + "/*.wav"))]
    name = sorted(noises)[0].split(":", 1)[1]
    expected = _read(TRAIN_NOISY, name[:-4]) - _read(TRAIN_CLEAN, name[:-4])
    np.testing.assert_allclose(noises[f"pair:{name}"], expected, atol=1e-7)


def test_pair_noises_join_training_only_and_leave_the_test_split_unchanged(sources, tmp_path):
    plain = simulate([sources[0]], [sources[1]], str(tmp_path / "plain"), train_mixtures=3)
    extra = simulate([sources[0]], [sources[1]], str(tmp_path / "extra"), train_mixtures=3, train_noise_pairs=(PAIRS,))
    assert any(e["noise"].startswith("pair:") for e in extra["train"])
    assert not any(e["noise"].startswith("pair:") for e in extra["test"])
    assert extra["test"] == plain["test"] and extra["test_noises"] == plain["test_noises"]
    for path in glob.glob(str(tmp_path / "plain" / "*_testset_wav" / "*.wav")):
        other = path.replace(os.sep + "plain" + os.sep, os.sep + "extra" + os.sep)
        assert open(path, "rb").read() == open(other, "rb").read()
    assert json.load(open(tmp_path / "extra" / "simulation.json"))["train_noises"] == extra["train_noises"]


def test_misaligned_pairs_are_refused(tmp_path):
    for sub in ("clean", "noisy"):
        shutil.copytree(TRAIN_CLEAN if sub == "clean" else TRAIN_NOISY, tmp_path / sub)
    path = sorted(glob.glob(str(tmp_path / "noisy" / "*.wav")))[0]
    x, rate = sf.read(path)
    sf.write(path, x[:-10], rate)
    with pytest.raises(ValueError, match="lengths differ"):
        pair_noises(f"{tmp_path / 'clean'}:{tmp_path / 'noisy'}")
    with pytest.raises(ValueError, match="CLEAN:NOISY"):
        pair_noises(str(tmp_path / "clean"))


def test_a_render_is_byte_identical_when_repeated(sources, tmp_path):
    """Same sources, options and stack: the same bytes in every file, and the same split
    digests in simulation.json (which also records the stack)."""
    runs = [simulate([sources[0]], [sources[1]], str(tmp_path / k), test_fraction=0.25, noise_test_fraction=0.25,
                     valid_fraction=0.3) for k in ("a", "b")]
    files = sorted(os.path.relpath(p, tmp_path / "a") for p in glob.glob(str(tmp_path / "a" / "*" / "*.wav")))
    assert len(files) == sum(2 * len(runs[0][k]) for k in ("train", "valid", "test")) > 0
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for subset in ("train", "valid", "test"):
        assert runs[0][f"{subset}_digest"] == runs[1][f"{subset}_digest"]
    assert runs[0]["train_digest"] != runs[0]["test_digest"]
    assert set(json.load(open(tmp_path / "a" / "simulation.json"))["stack"]) >= {"libsndfile", "soxr", "numpy"}


def test_a_render_target_never_mixes_with_other_files(sources, tmp_path):
    """A rerun with other settings into the same --out would leave the earlier render's
    files (other speakers, other splits) where training reads them: refused, like an --out
    overlapping a source folder or a missing source. The same rerun is allowed."""
    speech, noise = sources[0], sources[1]
    out = tmp_path / "set"
    simulate([speech], [noise], str(out), test_fraction=0.25, noise_test_fraction=0.25)
    before = {p: open(p, "rb").read() for p in glob.glob(str(out / "**" / "*"), recursive=True) if os.path.isfile(p)}
    with pytest.raises(ValueError, match="other settings"):
        simulate([speech], [noise], str(out), test_fraction=0.5, noise_test_fraction=0.25)
    assert {p: open(p, "rb").read() for p in before} == before  # nothing touched
    again = simulate([speech], [noise], str(out), test_fraction=0.25, noise_test_fraction=0.25)
    assert {p: open(p, "rb").read() for p in before} == before and again["test"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a render"):
        simulate([speech], [noise], str(tmp_path / "mine"))
    with pytest.raises(ValueError, match="overlaps the source folder"):
        simulate([speech], [noise], os.path.join(speech, "sim"))
    with pytest.raises(ValueError, match="no such folder"):
        simulate([speech, str(tmp_path / "no_such")], [noise], str(tmp_path / "x"))
    assert not (tmp_path / "x").exists() and not os.path.exists(os.path.join(speech, "sim"))


def test_pair_noise_in_subfolders_pairs_by_path(tmp_path):
    """sub/x.wav pairs with sub/x.wav, never with a top-level x.wav of another recording."""
    names = sorted(os.listdir(TRAIN_NOISY))[:2]
    for side, folder in (("clean", TRAIN_CLEAN), ("noisy", TRAIN_NOISY)):
        (tmp_path / side / "sub").mkdir(parents=True)
        shutil.copy(os.path.join(folder, names[0]), tmp_path / side / "x.wav")
        shutil.copy(os.path.join(folder, names[1]), tmp_path / side / "sub" / "x.wav")
    got = pair_noises(f"{tmp_path / 'clean'}:{tmp_path / 'noisy'}")
    assert sorted(got) == ["pair:sub/x.wav", "pair:x.wav"]
    for key, name in (("pair:x.wav", names[0]), ("pair:sub/x.wav", names[1])):
        want = pair_noises(f"{TRAIN_CLEAN}:{TRAIN_NOISY}")[f"pair:{name}"]
        assert np.array_equal(got[key], want)


def test_noises_sharing_a_file_name_are_told_apart(sources, tmp_path):
    """noise/a/noise1.wav and noise/b/noise1.wav: the records name them by path, so the
    train / test noise lists stay visibly disjoint."""
    noise = tmp_path / "noise"
    files = sorted(glob.glob(os.path.join(sources[1], "*")))
    for k, sub in enumerate(("a", "b", "a", "b")):
        (noise / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(files[k], noise / sub / (f"noise{k // 2}.wav"))
    s = simulate([sources[0]], [str(noise)], str(tmp_path / "out"), test_fraction=0.25, noise_test_fraction=0.5)
    names = s["train_noises"] + s["test_noises"]
    assert len(set(names)) == 4 and not set(s["train_noises"]) & set(s["test_noises"])
    assert all(n.startswith("noise/") for n in names)


def test_two_mixtures_of_one_utterance_never_straddle_train_and_valid(sources, tmp_path):
    """With --train_mixtures 2 every training utterance is two ids; a random (or authors')
    validation split took ids, so validation held speech that training saw in another mix.
    prepare_vctk keeps every mixture of a source utterance on one side."""
    from speechbrain_sslse.data_prep import prepare_vctk

    s = simulate([sources[0]], [sources[1]], str(tmp_path / "sim"), test_fraction=0.25, noise_test_fraction=0.25,
                 train_mixtures=2)
    speech = {e["id"]: e["speech"] for e in s["train"]}
    assert len(speech) == 2 * len(set(speech.values()))
    for split in ("random", "authors"):
        paths = prepare_vctk(str(tmp_path / "sim"), str(tmp_path / split), split, 0.2, 999)
        train, valid = (json.load(open(paths[k])) for k in ("train", "valid"))
        assert valid and train
        assert not {speech[u] for u in train} & {speech[u] for u in valid}, split
        assert set(train) | set(valid) == set(speech)


def test_channels_of_one_scene_stay_on_one_side_with_noise_groups_folder(sources, tmp_path, capsys):
    """Four channel files of one "scene" folder: split file by file (the default, with a note
    saying so) they can land in training and test alike; with noise_groups="folder" the scene
    is one recording, on one side only. Flat folders split exactly as before."""
    import soundfile as sf

    noise = tmp_path / "noise"
    shutil.copytree(sources[1], noise)
    (noise / "scene").mkdir()
    rng = np.random.default_rng(1)
    for ch in range(1, 5):
        sf.write(noise / "scene" / f"ch{ch:02d}.wav", 0.1 * rng.standard_normal(32000), 16000)
    flat = simulate([sources[0]], [sources[1]], str(tmp_path / "flat"), test_fraction=0.25, noise_test_fraction=0.25)
    again = simulate([sources[0]], [sources[1]], str(tmp_path / "flat_folder"), test_fraction=0.25,
                     noise_test_fraction=0.25, noise_groups="folder")
    assert (flat["train_noises"], flat["test_noises"]) == (again["train_noises"], again["test_noises"])
    sides = set()
    for seed in range(6):
        s = simulate([sources[0]], [str(noise)], str(tmp_path / f"g{seed}"), seed=seed, test_fraction=0.25,
                     noise_test_fraction=0.5, noise_groups="folder")
        scene_train = any("ch0" in n for n in s["train_noises"])
        scene_test = any("ch0" in n for n in s["test_noises"])
        assert scene_train != scene_test  # one side only
        sides.add(scene_test)
    assert sides == {True, False}  # and the scene is drawn like any other recording
    capsys.readouterr()
    simulate([sources[0]], [str(noise)], str(tmp_path / "f"), test_fraction=0.25, noise_test_fraction=0.5)
    assert "--noise_groups folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="noise_groups"):
        simulate([sources[0]], [str(noise)], str(tmp_path / "x"), noise_groups="scene")


def test_a_rerun_after_the_sources_changed_is_refused(sources, tmp_path):
    """Same settings, but speech files removed since: the earlier render's files of those
    utterances would stay in the split folders (test speakers' among training's) - refused
    before anything is written."""
    speech = tmp_path / "speech"
    shutil.copytree(sources[0], speech)
    out = tmp_path / "set"
    simulate([str(speech)], [sources[1]], str(out), test_fraction=0.25, noise_test_fraction=0.25)
    before = {p: open(p, "rb").read() for p in glob.glob(str(out / "**" / "*"), recursive=True) if os.path.isfile(p)}
    os.remove(sorted(glob.glob(str(speech / "*" / "*.wav")))[0])
    with pytest.raises(ValueError, match="rendered from other source files"):
        simulate([str(speech)], [sources[1]], str(out), test_fraction=0.25, noise_test_fraction=0.25)
    assert {p: open(p, "rb").read() for p in before} == before


def test_speakers_of_nested_and_overlapping_layouts(sources, tmp_path):
    """LibriTTS names (speaker/chapter/ folders) give one speaker per reader, not per
    chapter, as speaker_level="top" does for other speaker/session/ layouts; source folders
    that overlap are refused; silent noise or speech is refused before anything is written."""
    from speechbrain_sslse.simulation import speaker_of

    root = "/data/LibriTTS"
    assert speaker_of(f"{root}/84/121123/84_121123_000008_000000.wav", root) == "libri84"
    assert speaker_of(f"{root}/84/121550/84_121550_000001_000000.wav", root) == "libri84"
    assert speaker_of("/d/p226/p226_001.wav", "/d") == "p226"
    assert speaker_of("/d/ann/day1/a.wav", "/d") == os.path.join("ann", "day1")
    assert speaker_of("/d/ann/day1/a.wav", "/d", "top") == speaker_of("/d/ann/day2/b.wav", "/d", "top") == "ann"
    speech, noise = sources
    nested = tmp_path / "nested"  # two sessions per speaker: one speaker each with speaker_level="top"
    for k, path in enumerate(sorted(glob.glob(os.path.join(speech, "*", "*.wav")))):
        (nested / f"spk{k % 3}" / f"day{k % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, nested / f"spk{k % 3}" / f"day{k % 2}" / os.path.basename(path))
    s = simulate([str(nested)], [noise], str(tmp_path / "n"), test_fraction=0.34, speaker_level="top")
    assert {e["speaker"] for e in s["train"] + s["test"]} <= {"nested/spk0", "nested/spk1", "nested/spk2"}
    assert not {e["speaker"] for e in s["train"]} & {e["speaker"] for e in s["test"]}
    with pytest.raises(ValueError, match="overlap"):
        simulate([speech, os.path.join(speech, "spk0")], [noise], str(tmp_path / "a"))
    loud = tmp_path / "noise"
    shutil.copytree(noise, loud)
    sf.write(loud / "silent.wav", np.zeros(32000), 16000)
    with pytest.raises(ValueError, match="silent noise recording.*silent.wav"):
        simulate([speech], [str(loud)], str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    quiet = tmp_path / "quiet"
    shutil.copytree(speech, quiet)
    sf.write(quiet / "spk0" / "silent.wav", np.zeros(32000), 16000)
    with pytest.raises(ValueError, match="1 silent speech file.*silent.wav"):
        simulate([str(quiet)], [noise], str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_noises_in_two_folders_of_one_name_are_told_apart(sources, tmp_path):
    """--noise x/noise y/noise, both holding noise0.wav and noise1.wav: named by the folder's
    name and the path below it, the four recordings were two names, so the train and test
    lists showed one name on both sides and a mixture's record could not say which file."""
    files = sorted(glob.glob(os.path.join(sources[1], "*")))
    roots = [tmp_path / "x" / "noise", tmp_path / "y" / "noise"]
    for k, root in enumerate(roots):
        root.mkdir(parents=True)
        for j in range(2):
            shutil.copy(files[2 * k + j], root / f"noise{j}.wav")
    s = simulate([sources[0]], [str(r) for r in roots], str(tmp_path / "out"), test_fraction=0.25,
                 noise_test_fraction=0.5)
    names = s["train_noises"] + s["test_noises"]
    assert len(set(names)) == 4 and not set(s["train_noises"]) & set(s["test_noises"])


def test_two_pair_folders_with_one_file_name_both_stay_training_noises(sources, tmp_path):
    """--train_noise_pairs a/clean:a/noisy b/clean:b/noisy, both holding x.wav: the two noises
    were one name, the second replacing the first in the render (the first never mixed in)
    while the name was listed twice; each must be its own noise (or one clear error)."""
    names = sorted(os.path.basename(p) for p in glob.glob(TRAIN_NOISY + "/*.wav"))[:2]
    specs = []
    for k, sub in enumerate(("a", "b")):
        for part, src in (("clean", TRAIN_CLEAN), ("noisy", TRAIN_NOISY)):
            (tmp_path / sub / part).mkdir(parents=True)
            shutil.copy(os.path.join(src, names[k]), tmp_path / sub / part / "x.wav")
        specs.append(f"{tmp_path / sub / 'clean'}:{tmp_path / sub / 'noisy'}")
    try:
        s = simulate([sources[0]], [sources[1]], str(tmp_path / "out"), train_mixtures=8,
                     train_noise_pairs=tuple(specs))
    except ValueError as err:
        assert "x.wav" in str(err)
        return
    pairs = [n for n in s["train_noises"] if n.startswith("pair:")]
    assert len(pairs) == len(set(pairs)) == 2
