"""Build a VoiceBank-DEMAND-like training set from clean speech and noise folders.

For machines without VoiceBank-DEMAND. Mixes the way that corpus was made: train SNRs
0/5/10/15 dB, test SNRs 2.5/7.5/12.5/17.5 dB, SNR relative to the *active* speech level,
speaker-disjoint and noise-disjoint train/test splits, a fixed seed. Writes the folder
layout that ``speechbrain_sslse.data_prep`` (``prepare_vctk.py``) reads (16 kHz mono PCM16).
From the command line:

    python recipes/VCTK/simulate_vbd.py --speech ../shared/data/speech \
        --noise ../shared/data/noise --out data/sim_vbd

Speakers: LibriSpeech-style names (``<spk>-<chapter>-<utt>``) and LibriTTS-style names
(``<spk>_<chapter>_<para>_<sent>``) give the speaker; any other file belongs to the folder that
holds it (one folder = one "speaker"; ``speaker_level="top"``: the first folder below the
speech root, for ``speaker/session/`` layouts). Source folders may not overlap (a file listed
under two speakers could land on both sides of a split). Active level: P.56-style (the level
c for which the mean power of 10 ms frames above c - 15.9 dB equals c), a close, simpler
stand-in for ITU-T P.56.

Real noise matters more than more speech: ``train_noise_pairs`` (``--train_noise_pairs
CLEAN:NOISY``) adds the noise of real paired recordings (noisy minus clean, e.g.
VoiceBank-DEMAND train pairs, whose noise is real DEMAND) to the *training* noises only.
The test split does not depend on training options: each split draws from its own seeded
generator.

Reproducible: the same sources, options and software stack give byte-identical files
(tested). Lossy sources (``.ogg``, ``.mp3``) are decoded by libsndfile's codecs, whose
float output can differ in the last bits between builds, so another stack can render
slightly other mixtures under the same names. ``simulation.json`` records the stack and a
digest of each split's rendered files; compare digests before putting scores of two
renders side by side (``benchmarks/peers.py`` checks per-utterance ``pair`` digests).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
from collections import Counter

import numpy as np

from .audio import SAMPLE_RATE, AudioError, list_audio, same_or_inside, sf_path, write_audio
from .data_prep import SUBSETS
from .output_plan import write_text_atomic
from .mixing import TEST_SNRS, TRAIN_SNRS, load_mixing_audio, load_noise, mix, pair_noises
from .progress import progress_bar

_LIBRI = re.compile(r"^(\d+)-\d+-\d+$")  # LibriSpeech: 84-121123-0000
_LIBRITTS = re.compile(r"^(\d+)_\d+_\d{6}_\d{6}$")  # LibriTTS (same speaker ids): 84_121123_000008_000000


SPEAKER_LEVELS = ("folder", "top")


def speaker_of(path: str, root: str, level: str = "folder") -> str:
    """The speaker of a speech file: the LibriSpeech / LibriTTS speaker id in its name, else
    the folder that holds it (``folder``) or its first folder below ``root`` (``top``: a
    ``speaker/session/`` layout), relative to ``root``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _LIBRI.match(stem) or _LIBRITTS.match(stem)
    if m:
        return f"libri{m.group(1)}"
    below = os.path.relpath(os.path.dirname(path), root)
    return below.split(os.sep)[0] if level == "top" else below


def split(items: list[str], test_fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """(rest, held out): at least one item held out, both lists sorted."""
    items = sorted(items)
    rng.shuffle(items)
    n_test = max(1, round(test_fraction * len(items)))
    return sorted(items[n_test:]), sorted(items[:n_test])


NOISE_GROUPS = ("file", "folder")


def noise_recordings(listed: list[tuple[str, str]], noise_groups: str = "file") -> dict[str, str]:
    """{noise file: the recording it belongs to}: itself, or with ``folder`` its subfolder
    below its noise root (files directly in a root stay their own recording). A note on
    stderr when ``file`` splits folders that hold several files."""
    groups = {}
    in_subfolder: Counter[str] = Counter()  # files per noise subfolder
    for root, path in listed:
        folder = os.path.dirname(path)
        if os.path.normpath(folder) == os.path.normpath(root):
            groups[path] = path
            continue
        groups[path] = folder if noise_groups == "folder" else path
        in_subfolder[folder] += 1
    several = [f for f, n in in_subfolder.items() if n > 1]
    if noise_groups == "file" and several:
        print(f"note: {len(several)} noise subfolder(s) hold several files (e.g. {sorted(several)[0]}), split file "
              "by file; if a folder's files are channels or pieces of one recording, pass --noise_groups folder "
              "so that no recording is on both sides of a split", file=sys.stderr)
    return groups


def split_groups(groups: dict[str, str], items: list[str], fraction: float,
                 rng: random.Random) -> tuple[list[str], list[str]]:
    """``split`` over the recordings of ``items`` (each item its own recording: exactly
    ``split``), then back to their files."""
    recordings = sorted({groups[i] for i in items})
    rest, held = split(recordings, fraction, rng)
    held_set = set(held)
    return sorted(i for i in items if groups[i] not in held_set), sorted(i for i in items if groups[i] in held_set)


#: (clean, noisy) folder of each split: the VoiceBank-DEMAND layout that data_prep reads
SUBSET_DIRS = {subset: SUBSETS[subset] for subset in ("train", "valid", "test")}


def render_stack() -> dict[str, str]:
    """The software a render depends on for its exact samples (decoders, resampler)."""
    import soundfile
    import soxr

    return {"numpy": np.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__, "soxr": soxr.__version__}


def noise_labels(paths: list[tuple[str, str]]) -> dict[str, str]:
    """How the records name each noise recording: its file name, or, where two recordings
    share one (``a/noise1.wav``, ``b/noise1.wav``), its path below the noise folders, so
    that disjoint splits never look like a leak. Pair noises keep their ``pair:`` keys.
    ``paths``: (noise folder, file) as ``simulate`` listed them (not listed twice)."""
    names = Counter(os.path.basename(p) for _, p in paths)
    labels = {p: os.path.basename(p) if names[os.path.basename(p)] == 1
              else os.path.join(os.path.basename(os.path.normpath(root)), os.path.relpath(p, root))
              for root, p in paths}
    given = Counter(labels.values())  # two noise folders of one name (x/noise, y/noise): their full paths
    return {p: os.path.abspath(p) if given[label] > 1 else label for p, label in labels.items()}


def check_render_target(out: str, sources: list[str], settings: dict) -> None:
    """Refuses (``ValueError``) a missing source folder, an ``out`` inside a source (the
    next run would read the render as speech or noise) or holding one, and a non-empty
    ``out`` that is not an earlier render with the same ``settings`` (whose rerun is
    byte-identical, so it may be rewritten)."""
    for k, root in enumerate(sources):
        if not os.path.isdir(root):
            raise ValueError(f"{root}: no such folder")
        if same_or_inside(out, root) or same_or_inside(root, out):
            raise ValueError(f"--out {out} overlaps the source folder {root}; render into a folder of its own")
        for other in sources[k + 1 :]:  # one file under two speakers (or twice a noise) could straddle a split
            if same_or_inside(root, other) or same_or_inside(other, root):
                raise ValueError(f"source folders {root} and {other} overlap: give each folder once")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    record = os.path.join(out, "simulation.json")
    try:
        with open(record) as f:
            earlier = json.load(f).get("settings")
    except (OSError, ValueError):
        earlier = None
    if earlier != settings:
        what = "a render with other settings" if os.path.exists(record) else "files that are not a render"
        raise ValueError(f"{out} already holds {what}; its files would mix with the new render's: "
                         "choose a new --out, or delete it first")


def check_listed_once(paths: list[str], out: str) -> None:
    """Refuses (``ValueError``) source files that are one file under two names (a linked
    speaker folder or file beside its target, a speech folder linking into a noise folder):
    one recording under two speakers, or as speech and noise, could land on both sides of a
    split; and source files inside ``out`` (reached through a link): the render read back."""
    seen: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if same_or_inside(real, out):
            raise ValueError(f"{path} lies in --out {out} (through a link); render into a folder of its own")
        if real in seen:
            raise ValueError(f"{seen[real]} and {path} are one file (a link): it could land in training and "
                             "test alike; give each recording once")
        seen[real] = path


def silent_files(paths) -> list[str]:
    """The files whose samples are all zero, read block by block (no resampling: silence is
    silent at any rate). Unreadable files are left to the reader that renders them."""
    import soundfile as sf

    silent = []
    for path in progress_bar(sorted(paths), desc="check speech"):
        try:
            with sf.SoundFile(sf_path(path)) as f:  # (a name that is not UTF-8: by its bytes)
                if not any(np.any(block) for block in f.blocks(blocksize=1 << 16)):
                    silent.append(path)
        except (RuntimeError, OSError):  # (soundfile's errors are RuntimeErrors)
            continue
    return silent


def check_same_sources(out: str, plan: dict) -> None:
    """A rerun into an earlier render with the same settings rewrites it in place, which is
    safe only if it renders the same files: after source files were added, removed or
    renamed, the earlier render's files would stay beside the new ones (and training would
    read them, test speakers' included). Compared: what the record holds of ``plan``."""
    record = os.path.join(out, "simulation.json")
    if not os.path.isfile(record):
        return
    with open(record, encoding="utf-8") as f:
        earlier = json.load(f)
    changed = [k for k, v in plan.items() if k in earlier and earlier[k] != v]
    if changed:
        raise ValueError(f"{out} was rendered from other source files than the folders hold now, or with speakers "
                         f"grouped otherwise by an earlier version ({', '.join(changed)} differ); its files would mix "
                         "with the new render's: choose a new --out, or delete it first")


def simulate(
    speech_roots: list[str], noise_roots: list[str], out: str, seed: int = 999, test_fraction: float = 0.15,
    noise_test_fraction: float = 0.3, train_mixtures: int = 1, max_seconds: float = 12.0,
    train_noise_pairs: tuple[str, ...] = (), valid_fraction: float = 0.0, noise_valid_fraction: float = 0.0,
    noise_groups: str = "file", speaker_level: str = "folder",
) -> dict:
    """Renders the splits and writes ``simulation.json``: what each mixture is made of,
    and the training speech / noise lists that dynamic mixing draws from. ``ValueError``
    before anything is written for a missing source folder, an ``out`` that overlaps a
    source folder, or an ``out`` that holds anything but a render with the same settings
    (a rerun with other settings would leave the earlier render's files beside the new
    ones, and training would read them). ``noise_groups="folder"``: the files of one noise
    subfolder (the channels of a DEMAND scene, the pieces of one long recording) are one
    recording for the splits, so they never fall on both sides; files directly in a noise
    folder stay single recordings."""
    if noise_groups not in NOISE_GROUPS:
        raise ValueError(f"noise_groups must be one of {NOISE_GROUPS}, got {noise_groups!r}")
    if speaker_level not in SPEAKER_LEVELS:
        raise ValueError(f"speaker_level must be one of {SPEAKER_LEVELS}, got {speaker_level!r}")
    settings = {"speech": [os.path.abspath(r) for r in speech_roots], "noise": [os.path.abspath(r) for r in noise_roots],
                "seed": seed, "test_fraction": test_fraction, "noise_test_fraction": noise_test_fraction,
                "train_mixtures": train_mixtures, "max_seconds": max_seconds,
                "train_noise_pairs": [os.path.abspath(x) for spec in train_noise_pairs for x in spec.rsplit(":", 1)],
                "valid_fraction": valid_fraction, "noise_valid_fraction": noise_valid_fraction}
    if noise_groups != "file":  # recorded only when set, so earlier renders keep their settings
        settings["noise_groups"] = noise_groups
    if speaker_level != "folder":
        settings["speaker_level"] = speaker_level
    check_render_target(out, [*speech_roots, *noise_roots], settings)
    split_rng = random.Random(seed)
    by_speaker: dict[str, list[str]] = {}
    for root in speech_roots:
        for path in list_audio(root):
            speaker = f"{os.path.basename(os.path.normpath(root))}/{speaker_of(path, root, speaker_level)}"
            by_speaker.setdefault(speaker, []).append(path)
    listed = [(root, p) for root in noise_roots for p in list_audio(root)]
    noises, labels = [p for _, p in listed], noise_labels(listed)
    check_listed_once([p for files in by_speaker.values() for p in files] + noises, out)
    if len(by_speaker) < 2 or len(noises) < 2:
        raise ValueError("need at least two speakers and two noise files for disjoint splits")
    train_spk, test_spk = split(list(by_speaker), test_fraction, split_rng)
    groups = noise_recordings(listed, noise_groups)
    train_noise, test_noise = split_groups(groups, noises, noise_test_fraction, split_rng)
    valid_spk, valid_noise = [], []
    if valid_fraction > 0:  # speaker-disjoint (and, if asked, noise-disjoint) validation
        train_spk, valid_spk = split(train_spk, valid_fraction, split_rng)
        valid_noise = train_noise
        if noise_valid_fraction > 0:
            train_noise, valid_noise = split_groups(groups, train_noise, noise_valid_fraction, split_rng)
    noise_cache = {p: load_noise(p) for p in noises}
    pair_names = []
    for spec in train_noise_pairs:  # training only: never in the valid or test split
        extra = pair_noises(spec)
        twice = sorted(set(extra) & set(noise_cache))
        if twice:  # one name for two noises: the later would replace the earlier in the render
            raise ValueError(f"--train_noise_pairs: {twice[0][len('pair:'):]} is in two pair folders (the second: "
                             f"{spec}); give each pair folder once, with file names of their own")
        noise_cache.update(extra)
        pair_names += sorted(extra)
    silent = [labels.get(p, p) for p, wav in noise_cache.items() if not np.any(wav)]
    if silent:  # its mixtures would be clean speech recorded at a nominal SNR
        raise ValueError(f"silent noise recording(s): {', '.join(silent[:5])}; remove them from the noise folders")
    quiet = silent_files(p for files in by_speaker.values() for p in files)
    if quiet:  # a silent pair has no SNR and nothing to enhance; a test pair of it floors every system
        raise ValueError(f"{len(quiet)} silent speech file(s): {', '.join(quiet[:5])}; remove them from the speech folders")
    plan = {"listed_speech": sorted(os.path.abspath(p) for files in by_speaker.values() for p in files),
            "listed_noise": sorted(os.path.abspath(p) for p in noises),
            "train_speech": [os.path.abspath(p) for s in train_spk for p in sorted(by_speaker[s])],
            "valid_speakers": valid_spk, "test_speakers": test_spk}
    check_same_sources(out, plan)
    spk_index = {s: i for i, s in enumerate(sorted(by_speaker))}
    summary = {"seed": seed, "train": [], "valid": [], "test": [], **plan}
    for subset, speakers, noise_set, snrs, reps in (
        ("train", train_spk, train_noise + pair_names, TRAIN_SNRS, train_mixtures),
        ("valid", valid_spk, valid_noise, TRAIN_SNRS, 1),
        ("test", test_spk, test_noise, TEST_SNRS, 1),
    ):
        rng = random.Random(f"{seed}-{subset}")  # the test split ignores training options
        jobs = [(s, p, r) for s in speakers for p in sorted(by_speaker[s]) for r in range(reps)]
        digest = hashlib.sha256()
        for k, (spk, path, rep) in enumerate(progress_bar(jobs, desc=f"simulate {subset}")):
            try:
                clean = load_mixing_audio(path)[: int(max_seconds * SAMPLE_RATE)]
            except AudioError as err:
                print(f"skipped: {err}", file=sys.stderr)
                continue
            noise_path = rng.choice(noise_set)
            snr = snrs[k % len(snrs)]
            c, n = mix(clean, noise_cache[noise_path], snr, rng)
            uid = f"s{spk_index[spk]:03d}_{k:05d}"
            for folder, wav in zip(SUBSET_DIRS[subset], (c, n)):
                target = os.path.join(out, folder, uid + ".wav")
                write_audio(target, wav.astype(np.float32), subtype="PCM_16")
                with open(target, "rb") as f:
                    digest.update(f.read())
            summary[subset].append({"id": uid, "speaker": spk, "speech": path, "noise": labels.get(noise_path, noise_path), "snr_db": snr})
        summary[f"{subset}_digest"] = digest.hexdigest()
    for subset, noise_set in (("train", train_noise + pair_names), ("valid", valid_noise), ("test", test_noise)):
        summary[f"{subset}_noises"] = [labels.get(p, p) for p in noise_set]
    # what dynamic mixing may draw from: training speakers' files (train_speech) and training noises only
    summary["train_noise_files"] = [os.path.abspath(p) for p in train_noise]
    summary["train_noise_pairs"] = [":".join(os.path.abspath(x) for x in spec.rsplit(":", 1)) for spec in train_noise_pairs]
    summary["stack"] = render_stack()
    summary["settings"] = settings
    write_text_atomic(os.path.join(out, "simulation.json"), json.dumps(summary, indent=1))
    return summary
