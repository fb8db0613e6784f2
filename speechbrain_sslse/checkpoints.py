"""Checkpoints that survive a kill: written meta-file-last, checked before resuming.

SpeechBrain's ``Checkpointer`` writes ``CKPT.yaml`` *first*, so a job killed while saving
leaves a directory that looks complete but holds a truncated parameter file, and the next
run dies inside ``torch.load``. Here the meta file is written last by an atomic rename (a
directory without it is not a checkpoint), and ``check_checkpoints`` verifies the newest
checkpoint before recovery, setting aside a corrupt one and saying so.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil

import torch
import yaml
from speechbrain.utils.checkpoints import (CKPT_PREFIX, METAFNAME, PARAMFILE_EXT, Checkpoint, Checkpointer,
                                           average_checkpoints, ckpt_recency)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)
PENDING = METAFNAME + ".pending"
_TEXT_STATE = {"brain.ckpt", "counter.ckpt"}  # SpeechBrain writes these as YAML / plain text


#: checkpoint selection keys: validation L1 loss (the method) or PESQ
CKPT_KEYS = {"loss": "min_key", "pesq": "max_key", "stoi": "max_key"}


def best_checkpoint(ckpt_key: str) -> dict[str, str]:
    """``min_key=`` / ``max_key=`` for SpeechBrain's checkpoint calls: the one place that
    knows which way each selection key is better."""
    if ckpt_key not in CKPT_KEYS:
        raise ValueError(f"ckpt_key must be one of {sorted(CKPT_KEYS)}, got {ckpt_key!r}")
    return {CKPT_KEYS[ckpt_key]: ckpt_key}


def keep_best(ckpt_key: str) -> dict[str, list[str]]:
    """The same choice in ``save_and_keep_only``'s form (``min_keys=[...]``)."""
    return {arg + "s": [key] for arg, key in best_checkpoint(ckpt_key).items()}


class CheckpointError(RuntimeError):
    """No usable checkpoint to resume from; the message says which file and why."""


#: meta key of a checkpoint holding the mean of several epochs' weights (its value: the epochs)
AVERAGED = "averaged_epochs"


def is_epoch(ckpt: Checkpoint) -> bool:
    """A checkpoint written at the end of a training epoch (not mid-epoch, not an average)."""
    return bool(ckpt.meta.get("end-of-epoch")) and AVERAGED not in ckpt.meta


def average_last_epochs(checkpointer: Checkpointer, count: int, name: str = "enhancer") -> tuple[dict, list[int]]:
    """The mean of ``name``'s weights over the last ``count`` end-of-epoch checkpoints
    (SpeechBrain's ``average_checkpoints``) and the epochs they hold. Raises
    ``CheckpointError`` when fewer are kept (``ckpt_num_to_keep`` must be >= ``count``)."""
    ckpts = checkpointer.find_checkpoints(ckpt_predicate=is_epoch, max_num_checkpoints=count)
    epochs = sorted(_epoch_of(c) for c in ckpts)
    # the last `count` epochs, each once: an older epoch kept for its loss must not stand in
    if count < 1 or epochs != list(range(epochs[-1] - count + 1, epochs[-1] + 1) if epochs else []):
        raise CheckpointError(f"averaging the last {count} epochs needs their {count} checkpoints; "
                              f"{checkpointer.checkpoints_dir} holds epochs {epochs} among its newest "
                              f"(set ckpt_num_to_keep >= {count + 1})")
    state = average_checkpoints(ckpts, name)  # on the CPU
    return state, epochs


def _epoch_of(ckpt: Checkpoint) -> int:
    """The epoch a checkpoint ends: its epoch counter (the recipe's ``counter`` recoverable)."""
    with open(pathlib.Path(ckpt.path) / f"counter{PARAMFILE_EXT}", encoding="utf-8") as f:
        return int(f.read().strip())


class AtomicCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose checkpoints appear only once every file is written.

    Resuming (recovery by recency, without a selection key) skips averaged checkpoints:
    training continues from its own last state, while the best-by-key choice (test,
    export) weighs averages against single epochs."""

    def recover_if_possible(self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None):
        if importance_key is None and max_key is None and min_key is None and ckpt_predicate is None:
            ckpt_predicate = lambda c: AVERAGED not in c.meta  # noqa: E731
        return super().recover_if_possible(importance_key, max_key, min_key, ckpt_predicate)

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        return super()._save_checkpoint_metafile(pathlib.Path(fpath).with_name(PENDING), meta_to_include, end_of_epoch)

    def save_checkpoint(self, *args, **kwargs):
        ckpt = super().save_checkpoint(*args, **kwargs)
        if if_main_process():
            for f in pathlib.Path(ckpt.path).iterdir():  # on disk before the meta file says so
                _fsync(f)
            os.replace(ckpt.path / PENDING, ckpt.path / METAFNAME)
            _fsync(pathlib.Path(ckpt.path))
        # Every rank must see the finished checkpoint before any of them lists checkpoints
        # (save_and_keep_only decides deletions on each rank from the files on disk; ranks
        # that disagree deadlock in SpeechBrain's main-process-only delete).
        ddp_barrier()
        return ckpt


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _meta_problem(ckpt_dir: pathlib.Path) -> str | None:
    """Why a checkpoint's CKPT.yaml cannot be used (empty, garbage, not a mapping)."""
    try:
        with open(ckpt_dir / METAFNAME, encoding="utf-8") as fh:
            meta = yaml.safe_load(fh)
        if not isinstance(meta, dict) or "unixtime" not in meta:
            raise ValueError("no checkpoint metadata in it")
    except Exception as err:  # noqa: BLE001 - any unreadable meta file is a corrupt checkpoint
        return f"{METAFNAME} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
    return None


def _set_aside(ckpt_dir: pathlib.Path) -> pathlib.Path:
    aside = pathlib.Path(str(ckpt_dir) + ".corrupt")
    if (ckpt_dir / METAFNAME).exists():
        os.replace(ckpt_dir / METAFNAME, ckpt_dir / (METAFNAME + ".corrupt"))
    os.replace(ckpt_dir, aside)  # no longer a checkpoint folder: kept for inspection
    return aside


def _problem(ckpt_dir: pathlib.Path) -> str | None:
    """Why a checkpoint cannot be loaded, or None when every file loads."""
    for f in sorted(ckpt_dir.glob("*" + PARAMFILE_EXT)):
        try:
            if f.name in _TEXT_STATE or f.name.startswith("dataloader-"):
                with open(f, encoding="utf-8") as fh:  # Brain / counter / loader state: YAML text
                    if not isinstance(yaml.safe_load(fh), (dict, int)):
                        raise ValueError("unexpected content")
            else:
                torch.load(f, map_location="cpu", weights_only=False)
        except Exception as err:  # truncated zip, unpickling error, bad YAML, ...
            return f"{f.name} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    return None


def check_checkpoints(checkpointer: Checkpointer) -> None:
    """Before resuming: remove half-written checkpoint folders, and verify the newest
    checkpoint; a corrupt one is renamed ``*.corrupt`` (with a warning) so that recovery
    falls back to the previous one. Raises ``CheckpointError`` if none is usable."""
    folder = pathlib.Path(checkpointer.checkpoints_dir)
    if not folder.is_dir():
        return
    for d in folder.glob(CKPT_PREFIX + "+*"):
        if d.is_dir() and not d.name.endswith(".corrupt") and not (d / METAFNAME).exists():
            logger.warning("removing incomplete checkpoint %s (the job stopped while saving it)", d)
            shutil.rmtree(d, ignore_errors=True)
    bad_meta = []
    for d in sorted(folder.glob(CKPT_PREFIX + "+*")):  # SpeechBrain would crash listing these
        if d.is_dir() and not d.name.endswith(".corrupt"):
            problem = _meta_problem(d)
            if problem is not None:
                bad_meta.append((d, problem, _set_aside(d)))
    # the ones resuming would load, newest first (averages are for test and export only)
    checkpoints = sorted((c for c in checkpointer.list_checkpoints() if AVERAGED not in c.meta),
                         key=ckpt_recency, reverse=True)
    for d, problem, aside in bad_meta:
        if checkpoints:
            logger.warning("checkpoint %s is corrupt: %s; moved to %s", d, problem, aside)
        else:
            raise CheckpointError(f"checkpoint {d} is corrupt: {problem}. It was moved to {aside}; no earlier "
                                  "checkpoint exists. Run the command again to start training from scratch.")
    for i, ckpt in enumerate(checkpoints):
        problem = _problem(pathlib.Path(ckpt.path))
        if problem is None:
            return
        aside = _set_aside(pathlib.Path(ckpt.path))
        if i + 1 < len(checkpoints):
            logger.warning("checkpoint %s is corrupt: %s; moved to %s, falling back to %s",
                           ckpt.path, problem, aside, checkpoints[i + 1].path)
        else:
            raise CheckpointError(
                f"checkpoint {ckpt.path} is corrupt: {problem}. It was moved to {aside}; no earlier "
                "checkpoint exists. Run the command again to start training from scratch."
            )
