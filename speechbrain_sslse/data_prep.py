"""VoiceBank-DEMAND (Valentini-Botinhao 2017) or your own CLEAN_DIR:NOISY_DIR pairs ->
SpeechBrain JSON manifests at 16 kHz (``train.json``, ``valid.json``, ``test.json``).

Reads the official layout (``clean_trainset_28spk_wav/``, ``noisy_trainset_28spk_wav/``,
``clean_testset_wav/``, ``noisy_testset_wav/``) at 48 kHz, or the same folders already at
16 kHz. 48 kHz files are resampled once into ``<save_folder>/wav16k/``.

Validation split:
``authors`` = the authors' 5 %: scikit-learn's ``train_test_split(files, test_size=0.05,
random_state=13162)`` over the noisy training files sorted by name (their ``get_filepaths``
returns ``sorted`` paths of one folder), reproduced without scikit-learn
(``speechbrain_sslse.data.authors_split``); both manifests keep its order;
``random`` = a different 5 %, drawn with ``random.Random(seed)`` from the sorted ids;
``speakers`` = speakers p226 + p287 (SpeechBrain / s3prl recipes);
``folder`` = the pre-rendered ``clean_validset_wav`` / ``noisy_validset_wav`` pair written
by ``simulate_vbd.py --valid_fraction`` (speaker- and noise-disjoint from training).
The split used is recorded in ``<save_folder>/prep.json``; a later call that finds the
manifests keeps them, and refuses (``PrepError``) if it was asked for another split or
other data (delete the manifests to rebuild them).

Your own data (fine-tuning): ``data_folder`` may be ``CLEAN_DIR:NOISY_DIR``, two folders of
paired files with matching names (relative paths below each folder, extension aside; any
audio format, any rate, searched recursively). They are the training pairs, the validation
utterances are split off them as above, and ``test_pairs`` (another ``CLEAN_DIR:NOISY_DIR``)
is the test set; without it the test manifest repeats the validation pairs (with a warning).
``test_pairs`` also replaces the test folders of a VoiceBank-DEMAND ``data_folder``.

Used by ``recipes/VCTK/train.py`` (``prepare_vctk``, on the main process) and from the
command line:

    python recipes/VCTK/prepare_vctk.py DATA_FOLDER SAVE_FOLDER [--valid_split speakers]
    python recipes/VCTK/prepare_vctk.py CLEAN_DIR:NOISY_DIR SAVE_FOLDER [--test_pairs CLEAN_DIR:NOISY_DIR]
"""
from __future__ import annotations

import json
import logging
import os
import random

import soundfile as sf

from .audio import SAMPLE_RATE, AudioError, is_utf8_name, list_audio, read_audio, resample, same_or_inside, write_audio
from .output_plan import write_text_atomic
from .data import AUTHORS_RANDOM_STATE, authors_split
from .progress import progress_bar

logger = logging.getLogger(__name__)

COPIES = "wav16k"  # <save_folder>/wav16k/: the 16 kHz copies
RECIPE_WRITES = ("save", "enhanced_wavs")  # the recipe's checkpoint and enhanced folders, by default

SUBSETS = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
    "valid": ("clean_validset_wav", "noisy_validset_wav"),  # simulate_vbd.py --valid_fraction
}
VALID_SPEAKERS = ("p226", "p287")
VALID_SPLITS = ("authors", "random", "speakers", "folder")


class PrepError(ValueError):
    """The data folder cannot be turned into manifests; the message says why."""


def pair_spec(spec: str | None) -> tuple[str, str] | None:
    """(clean, noisy) folders of a ``CLEAN_DIR:NOISY_DIR`` spec; None for a plain folder."""
    if not spec or os.path.isdir(spec) or ":" not in spec:
        return None
    clean, noisy = spec.rsplit(":", 1)
    return clean, noisy


def _check_pairs(folders: tuple[str, str], spec: str) -> None:
    missing = [d for d in folders if not os.path.isdir(d)]
    if missing:
        raise PrepError(f"{spec}: expected CLEAN_DIR:NOISY_DIR, but {missing[0]!r} is not a folder")


def _audio(folder: str, extensions: tuple[str, ...] | None, save_folder: str, written: list[str]) -> dict[str, str]:
    """uid -> file: the path below ``folder`` without extension, "/" read as "_". What the
    recipe writes (``written``: copies, checkpoints, enhanced outputs) is never read as data;
    nor is the rest of ``save_folder``, unless the data lies inside it."""
    if not os.path.isdir(folder):
        raise PrepError(f"missing folder {folder}")
    exclude = written if same_or_inside(folder, save_folder) else [*written, save_folder]
    files = list_audio(folder, exclude=exclude, **({"extensions": extensions} if extensions else {}))
    names: dict[str, str] = {}
    for path in files:
        uid = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "_")
        if uid in names:
            raise PrepError(f"{folder}: {names[uid]} and {path} would share the utterance id {uid!r}; rename one")
        names[uid] = path
    if not names:
        raise PrepError(f"no {'.wav' if extensions else 'audio'} files in {folder}")
    return names


def _to_16k(path: str, out_folder: str, uid: str) -> tuple[str, int]:
    """Path of a 16 kHz mono copy (the file itself when it already is) and its length.
    Every file is read once, so unreadable, empty or NaN/Inf files are refused here,
    not in the middle of training."""
    if not is_utf8_name(path):  # read_audio opens it by its bytes; SpeechBrain's training reader cannot
        raise PrepError(f"{path}: its name is not UTF-8 (Latin-1 from an old archive?); the training data "
                        "loader cannot open it: rename it (e.g. convmv -f latin1 -t utf8)")
    try:
        wav, rate = read_audio(path)
    except AudioError as err:
        raise PrepError(str(err)) from None
    if wav.shape[0] != 1:
        raise PrepError(f"{path}: has {wav.shape[0]} channels; the recipe trains on mono pairs")
    if rate == SAMPLE_RATE:
        return os.path.abspath(path), wav.shape[1]
    target = os.path.join(out_folder, uid + ".wav")
    # a copy carries its source's modification time: any other time (a source replaced since,
    # also by an older file: cp -p, tar, rsync -t) makes it again
    source_time = os.stat(path).st_mtime_ns
    if not os.path.exists(target) or os.stat(target).st_mtime_ns != source_time:
        write_audio(target, resample(wav, rate)[0])
        os.utime(target, ns=(source_time, source_time))
    return os.path.abspath(target), sf.info(target).frames


def _pairs(data_folder: str, save_folder: str, written: list[str], subset: str,
           folders: tuple[str, str] | None = None, sources: dict[str, str] | None = None,
           speech: dict[str, str] | None = None) -> dict[str, dict]:
    """The pairs of ``subset``: the VoiceBank-DEMAND folders of ``data_folder`` (.wav), or
    the given (clean, noisy) folders (any audio format). ``sources``: filled with {resolved
    source file: "subset/id"} (what the manifests were made of, before any 16 kHz copy);
    ``speech``: with {id: resolved clean file} (ids that share one are one utterance)."""
    official = folders is None
    clean_dir, noisy_dir = (os.path.join(data_folder, d) for d in SUBSETS[subset]) if official else folders
    extensions = (".wav",) if official else None
    clean, noisy = (_audio(d, extensions, save_folder, written) for d in (clean_dir, noisy_dir))
    if set(clean) != set(noisy):
        only_c, only_n = sorted(set(clean) - set(noisy)), sorted(set(noisy) - set(clean))
        raise PrepError(
            f"{subset}: clean and noisy files do not pair up; "
            f"only clean: {only_c[:5]}{'...' if len(only_c) > 5 else ''}, "
            f"only noisy: {only_n[:5]}{'...' if len(only_n) > 5 else ''}"
        )
    copies = SUBSETS[subset] if official else (f"{subset}_clean", f"{subset}_noisy")
    entries = {}
    for uid in progress_bar(sorted(clean), desc=f"prepare {subset}"):
        c_path, c_len = _to_16k(clean[uid], os.path.join(save_folder, COPIES, copies[0]), uid)
        n_path, n_len = _to_16k(noisy[uid], os.path.join(save_folder, COPIES, copies[1]), uid)
        if c_len != n_len:
            raise PrepError(f"{subset}/{uid}: clean has {c_len} samples, noisy {n_len}; pairs must be aligned")
        if sources is not None:
            for path in (clean[uid], noisy[uid]):
                sources.setdefault(os.path.realpath(path), f"{subset}/{uid}")
        if speech is not None:
            speech[uid] = os.path.realpath(clean[uid])
        entries[uid] = {
            "clean_wav": c_path,
            "noisy_wav": n_path,
            "length": c_len / SAMPLE_RATE,
            "spk": uid.split("_")[0],
        }
    return entries


def split_valid(train: dict[str, dict], valid_split: str, valid_ratio: float, seed: int,
                sources: dict[str, str] | None = None) -> tuple[dict, dict]:
    """(train, valid): the authors' split, a seeded random utterance split or the p226 + p287
    speaker split. ``sources`` ({id: its clean speech}): ids of one utterance never straddle
    the split, or validation would hold the very speech training saw: every id whose speech
    has an id in validation goes to validation. Such ids are the mixtures of one source
    utterance in a simulated set (``--train_mixtures 2``; from its ``simulation.json``) and
    pairs of one clean file under two names (a linked speaker folder, or one clean file
    linked beside each noisy take)."""
    rest, valid = _split_ids(train, valid_split, valid_ratio, seed)
    if sources:
        held = {sources[u] for u in valid if u in sources}
        moved = {u for u in rest if sources.get(u) in held}
        rest = {u: e for u, e in rest.items() if u not in moved}
        valid = {u: train[u] for u in sorted(set(valid) | moved)}
        if not rest:
            raise PrepError("the validation split left no training utterances")
        if moved:
            logger.info("%d training id(s) share their speech with validation ids (mixtures of one utterance or "
                        "linked files): moved to validation", len(moved))
    return rest, valid


def simulated_sources(data_folder: str) -> dict[str, str]:
    """{training id: its clean source file} of a set rendered by ``simulate_vbd.py`` ({} for
    any other data folder)."""
    try:
        with open(os.path.join(data_folder, "simulation.json"), encoding="utf-8") as f:
            return {e["id"]: e["speech"] for e in json.load(f).get("train", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _split_ids(train: dict[str, dict], valid_split: str, valid_ratio: float, seed: int) -> tuple[dict, dict]:
    if valid_split == "authors":
        # the authors' list: noisy file paths of one folder, sorted (full paths share the
        # folder, so the order is that of the file names)
        order = sorted(train, key=lambda u: os.path.basename(train[u]["noisy_wav"]))
        try:
            train_ids, valid_ids = authors_split(order, valid_ratio, AUTHORS_RANDOM_STATE)
        except ValueError as err:
            raise PrepError(f"authors' split: {err}") from None
        return {u: train[u] for u in train_ids}, {u: train[u] for u in valid_ids}
    if valid_split == "random":
        ids = sorted(train)
        n_valid = max(1, round(valid_ratio * len(ids)))
        valid_ids = set(random.Random(seed).sample(ids, n_valid))
    elif valid_split == "speakers":
        valid_ids = {u for u, e in train.items() if e["spk"] in VALID_SPEAKERS}
        if not valid_ids:
            raise PrepError(f"no utterances of validation speakers {VALID_SPEAKERS} in the train set")
    else:
        raise PrepError(f"valid_split must be one of {VALID_SPLITS}, got {valid_split!r}")
    rest = {u: e for u, e in train.items() if u not in valid_ids}
    if not rest:
        raise PrepError("the validation split left no training utterances")
    return rest, {u: train[u] for u in sorted(valid_ids)}


#: The keys of ``prep.json`` that say which data the manifests list (the rest: the split).
SOURCE_KEYS = ("data_folder", "train_pairs", "test_pairs")


def data_source(data_folder: str, test_pairs: str | None = None) -> dict:
    """Which data manifests are made of, as ``prep.json`` records it (absolute paths)."""
    own, test_folders = pair_spec(str(data_folder)), pair_spec(test_pairs)
    return {"data_folder": None if own else os.path.abspath(data_folder),
            "train_pairs": [os.path.abspath(d) for d in own] if own else None,
            "test_pairs": [os.path.abspath(d) for d in test_folders] if test_folders else None}


def check_data_folders(data_folder: str, test_pairs: str | None = None) -> None:
    """``PrepError`` unless the data folder (or both CLEAN_DIR:NOISY_DIR folders) and the test
    pair folders exist: checked before a recipe creates its output folder."""
    for folders, spec in ((pair_spec(str(data_folder)), data_folder), (pair_spec(test_pairs), test_pairs)):
        if folders is not None:
            _check_pairs(folders, spec)
    if pair_spec(str(data_folder)) is None and not os.path.isdir(data_folder):
        raise PrepError(f"data folder {data_folder} does not exist (or give your pairs as CLEAN_DIR:NOISY_DIR)")


def check_same_source(save_folder: str, data_folder: str, test_pairs: str | None = None) -> None:
    """Refuses (``PrepError``) a ``save_folder`` whose manifests list other data than asked:
    a rerun would train and test on the old data while its records named the new. Folders
    prepared before the data folder was recorded are not checked."""
    record = os.path.join(save_folder, "prep.json")
    try:
        with open(record, encoding="utf-8") as f:
            used = json.load(f)
    except (OSError, ValueError):
        return
    if "data_folder" not in used:
        return
    asked = data_source(data_folder, test_pairs)
    changed = [k for k in SOURCE_KEYS if used.get(k) != asked[k]]
    if changed:
        diffs = ", ".join(f"{k}: {used.get(k)} -> {asked[k]}" for k in changed)
        raise PrepError(f"{save_folder} holds manifests of other data ({diffs}); choose another output folder, "
                        "or delete its train/valid/test.json and prep.json to prepare the new data there")


def prepare_vctk(
    data_folder: str,
    save_folder: str,
    valid_split: str = "authors",
    valid_ratio: float = 0.05,
    seed: int = 999,
    skip_prep: bool = False,
    test_pairs: str | None = None,
    written: list[str] | None = None,
) -> dict[str, str]:
    """Writes train.json / valid.json / test.json into save_folder; returns their paths.
    ``data_folder``: a VoiceBank-DEMAND folder or ``CLEAN_DIR:NOISY_DIR`` training pairs;
    ``test_pairs``: ``CLEAN_DIR:NOISY_DIR`` test pairs (see the module docstring);
    ``written``: the folders the caller writes into (checkpoints, enhanced files), never read
    as data (default: ``save/`` and ``enhanced_wavs/`` of save_folder, the recipe's defaults).
    Raises ``PrepError`` (one line) for a folder that cannot become manifests."""
    paths = {s: os.path.join(save_folder, f"{s}.json") for s in ("train", "valid", "test")}
    record = os.path.join(save_folder, "prep.json")
    split = {"valid_split": valid_split, "valid_ratio": valid_ratio,
             "random_state": AUTHORS_RANDOM_STATE if valid_split == "authors" else seed}
    if valid_split in ("speakers", "folder"):
        split = {"valid_split": valid_split}
    own = pair_spec(str(data_folder))  # your own training pairs
    test_folders = pair_spec(test_pairs)
    if skip_prep or all(os.path.exists(p) for p in paths.values()):
        if not skip_prep and os.path.exists(record):
            check_same_source(save_folder, data_folder, test_pairs)
            with open(record, encoding="utf-8") as f:
                used = {k: v for k, v in json.load(f).items() if k not in SOURCE_KEYS}
            if used != split:  # kept, they would validate on another split than the one asked
                # for (with dynamic mixing: on speakers in the mixing pool)
                raise PrepError(f"{save_folder}: its manifests were made with {used}, not the {split} asked "
                                "for; delete train.json / valid.json / test.json there to re-split, or "
                                "choose another output folder")
        return paths
    if valid_split not in VALID_SPLITS:
        raise PrepError(f"valid_split must be one of {VALID_SPLITS}, got {valid_split!r}")
    if test_pairs and test_folders is None:
        raise PrepError(f"test_pairs must be CLEAN_DIR:NOISY_DIR, got {test_pairs!r}")
    check_data_folders(data_folder, test_pairs)
    if own is not None and valid_split == "folder":
        raise PrepError("valid_split 'folder' needs a VoiceBank-DEMAND-style data folder; with CLEAN_DIR:NOISY_DIR "
                        "pairs choose authors, random or speakers")
    os.makedirs(save_folder, exist_ok=True)
    written = [os.path.join(save_folder, COPIES),
               *(written if written is not None else (os.path.join(save_folder, d) for d in RECIPE_WRITES))]
    trained: dict[str, str] = {}  # every training and validation source file
    if valid_split == "folder":
        train = _pairs(data_folder, save_folder, written, "train", sources=trained)
        valid = _pairs(data_folder, save_folder, written, "valid", sources=trained)
    else:
        speech: dict[str, str] = {}
        train = _pairs(data_folder, save_folder, written, "train", own, trained, speech)
        if own is None:  # a simulated set's mixtures of one utterance
            speech.update(simulated_sources(data_folder))
        train, valid = split_valid(train, valid_split, valid_ratio, seed, speech)
    if test_folders is not None:
        tested: dict[str, str] = {}
        test = _pairs(data_folder, save_folder, written, "test", test_folders, tested)
        shared = sorted(set(tested) & set(trained))
        if shared:  # the test scores would be scores on training data
            raise PrepError(f"{len(shared)} test file(s) are also training files (same file, or a link to it), e.g. "
                            f"{tested[shared[0]]} is {trained[shared[0]]} ({shared[0]}): the test scores would be "
                            "on training data; give test pairs apart from the training pairs")
    elif own is not None:
        logger.warning("no test_pairs given: the test manifest repeats the %d validation pairs, so the scores "
                       "at the end of training are validation scores", len(valid))
        test = valid
    else:
        test = _pairs(data_folder, save_folder, written, "test")
    sets = {"train": train, "valid": valid, "test": test}
    for name, entries in sets.items():
        write_text_atomic(paths[name], json.dumps(entries, indent=2))
        logger.info("%s: %d utterances -> %s", name, len(entries), paths[name])
    write_text_atomic(record, json.dumps({**split, **data_source(data_folder, test_pairs)}))
    logger.info("validation split: %s", split)
    return paths
