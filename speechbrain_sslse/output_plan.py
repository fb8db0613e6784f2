"""Which input file goes to which output file, decided before anything is written.

The one place where the data-safety rules live, so the CLI, evaluation and the Python API
all obey them: an output never replaces an input of the run (resolved paths, hard and
symbolic links included, whatever the extensions), no two inputs share one output, the
output folder is never the folder an input was listed from (or a named file lies in), an
existing file in the output folder is replaced only when an earlier run wrote it there and
nobody changed it since (``OUTPUT_RECORD``), an output folder inside an input folder is not
read back as input (and only there: inputs are never dropped because
they happen to lie below the output folder), and entries that are not regular files
(named pipes, sockets, devices) are skipped with a reason instead of blocking a reader
forever.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import tempfile
import unicodedata
from typing import Iterable, Sequence

from .audio import AUDIO_EXTENSIONS, NOT_REGULAR, AudioError, list_audio, same_or_inside


class PlanError(AudioError):
    """The run as asked would overwrite an input or lose an output; nothing was written."""


def write_text_atomic(path: str, text: str, errors: str = "strict") -> None:
    """Writes ``text`` to ``path`` through a fsynced temporary file beside it and a rename, so
    a crash leaves either the old file or the new one (hyperparams, manifests, records, model
    cards, README tables). The temporary file has a fresh name (no file of the user's is
    replaced by it); the result keeps the mode the old file had, or the umask's default.
    ``errors``: how characters UTF-8 cannot encode are written ("backslashreplace" for tables
    meant to be read, where a file name that is not UTF-8 must not stop the write)."""
    _replace_atomically(path, lambda f: f.write(text.encode("utf-8", errors=errors)))


def copy_file_atomic(src: str, dst: str) -> None:
    """Copies ``src`` to ``dst`` as ``write_text_atomic`` writes: a ``dst`` that is a link
    (symbolic or hard) to a file of the user's is replaced, never written through."""
    with open(src, "rb") as source:
        _replace_atomically(dst, lambda f: shutil.copyfileobj(source, f))


def _replace_atomically(path: str, write) -> None:
    """``write(binary file)`` into a fresh temporary file beside ``path``, fsync, the mode
    ``path`` had (or the umask's default), rename over ``path``; the temporary file never
    outlives a failure."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (outputs mirror below it)."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = os.sep.join(fixed)
    if not root and os.path.isabs(pattern):  # "/*.wav": the filesystem root, not the current folder
        return os.sep
    return root or "."


def _inside_only(exclude: Sequence[str], root: str) -> list[str]:
    """The ``exclude`` folders that lie below ``root``: an excluded folder that holds the
    root (the output folder above an input folder) must not hide the input itself."""
    return [e for e in exclude if same_or_inside(e, root) and _real(e) != _real(root)]


def expand_inputs(
    inputs: Iterable[str], exclude: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path, path relative to the folder or glob it came from) for files, folders
    (recursive, audio extensions only) and globs; plus (input, reason) for inputs that gave
    nothing or were skipped. An ``exclude`` folder is left out of a folder or glob that
    contains it, never of one it contains."""
    found: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            hidden = _inside_only(exclude, item)
            files = _not_earlier_outputs(list_audio(item, exclude=hidden, skipped=problems), item)
            problems += _left_in_output_folders(hidden)
            if not files:
                problems.append((item, f"is a directory with no audio files ({', '.join(AUDIO_EXTENSIONS)})"))
            found += [(p, os.path.relpath(p, item)) for p in files]
        elif os.path.exists(item):
            if os.path.isfile(item):
                found.append((item, os.path.basename(item)))
            else:
                problems.append((item, NOT_REGULAR))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                problems.append((item, "no such file, folder or glob match"))
            root = _glob_root(item)
            hidden = _inside_only(exclude, root)
            records = {e: recorded_outputs(e) for e in hidden}  # each output folder's record read once
            keep = set(_not_earlier_outputs([m for m in matches if os.path.isfile(m)], root))
            for m in matches:
                if os.path.isfile(m) and m not in keep and not any(same_or_inside(m, e) for e in hidden):
                    continue  # an earlier run's output elsewhere (see _not_earlier_outputs)
                if os.path.isfile(m):
                    held = [e for e in hidden if same_or_inside(m, e)]
                    if not held:
                        found.append((m, os.path.relpath(m, root)))
                    elif not _unchanged_output(m, held[0], records[held[0]]):
                        problems.append((m, IN_OUTPUT_FOLDER))
                elif not os.path.isdir(m):
                    problems.append((m, NOT_REGULAR))
    return found, problems


def _not_earlier_outputs(files: list[str], root: str) -> list[str]:
    """``files`` (found below the folder or glob root ``root``) without those an earlier run
    wrote, unchanged, into an output folder below ``root`` (by its ``OUTPUT_RECORD``):
    enhanced outputs are not enhanced again. The root's own record does not count (an output
    folder given as the input is meant: a second model on the first one's outputs), a file
    named on its own is never dropped, and a user's file in such a folder stays (it is not in
    the record)."""
    top = os.path.abspath(root)
    records: dict[str, dict[str, list[int]] | None] = {}
    kept = []
    for path in files:
        folder, ours = os.path.dirname(os.path.abspath(path)), False
        while not ours and folder != top and folder.startswith(top.rstrip(os.sep) + os.sep):
            if folder not in records:
                records[folder] = (recorded_outputs(folder)
                                   if os.path.isfile(os.path.join(folder, OUTPUT_RECORD)) else None)
            if records[folder] is not None:
                ours = _unchanged_output(path, folder, records[folder])
            folder = os.path.dirname(folder)
        if not ours:
            kept.append(path)
    return kept


IN_OUTPUT_FOLDER = ("lies in the output folder, which is not read as input, and no run wrote it there: "
                    "not enhanced (move it out of the output folder)")


def _left_in_output_folders(folders: Sequence[str]) -> list[tuple[str, str]]:
    """(file, reason) for audio in output folders inside an input folder that no run wrote:
    a user's recording there is named as not enhanced, never dropped without a word."""
    left = []
    for folder in (f for f in folders if os.path.isdir(f)):
        record = recorded_outputs(folder)
        left += [(p, IN_OUTPUT_FOLDER) for p in list_audio(folder) if not _unchanged_output(p, folder, record)]
    return left


def check_jobs(jobs: Sequence[tuple[str, str]], protected: Sequence[str] = ()) -> None:
    """Refuses (``PlanError``, one line naming the files) a set of (input, output) jobs in
    which an output would replace any input of the run, or any ``protected`` file (the
    clean references of an evaluation, say), or two inputs share an output."""
    inputs = {}
    for src in [s for s, _ in jobs] + list(protected):
        inputs.setdefault(_real(src), src)
    seen: dict[str, str] = {}
    folded: dict[str, tuple[str, str]] = {}  # on a disk blind to case: one name for A.wav and a.wav
    blind: dict[str, bool] = {}
    for src, dst in jobs:
        real = _real(dst)
        parent = os.path.dirname(real)
        if parent not in blind:
            blind[parent] = case_blind(parent)
        if blind[parent]:
            key = unicodedata.normalize("NFC", real).casefold()
            other_src, other_dst = folded.setdefault(key, (src, dst))
            if _real(other_dst) != real and _real(other_src) != _real(src):
                raise PlanError(f"inputs {other_src} and {src} would be written to {other_dst} and {dst}, one file "
                                "on this disk (it does not tell upper from lower case); rename one or enhance "
                                "them into different output folders")
        if real in inputs:
            raise PlanError(f"output {dst} would overwrite the input {inputs[real]}; "
                            "choose another output file or folder")
        if os.path.exists(dst):
            for other in inputs.values():
                if os.path.exists(other) and os.path.samefile(dst, other):
                    raise PlanError(f"output {dst} is the same file as the input {other} (a link); "
                                    "choose another output file or folder")
        if real in seen and _real(seen[real]) != _real(src):
            raise PlanError(f"inputs {seen[real]} and {src} would both be written to {dst}; "
                            "rename one or enhance them into different output folders")
        seen[real] = src


def case_blind(folder: str) -> bool:
    """Whether the disk of ``folder`` (or of its nearest existing parent) takes names that
    differ only in case (or Unicode normalisation) for one file, as macOS and Windows disks
    and USB sticks do: found by looking up an entry there with its case swapped, nothing
    written."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return _case_blind_disk(folder)


@functools.lru_cache(maxsize=256)
def _case_blind_disk(folder: str) -> bool:
    try:  # entries of the folder itself first: the folder's own name lives on its parent's disk
        with os.scandir(folder) as entries:
            candidates = [e.path for _, e in zip(range(50), entries)] + [folder]
    except OSError:
        candidates = [folder]
    for path in candidates:
        name = os.path.basename(path)
        if name and name.swapcase() != name:
            other = os.path.join(os.path.dirname(path), name.swapcase())
            try:
                return os.path.exists(other) and os.path.samefile(path, other)
            except OSError:
                return False
    return False


def check_output_folder(path: str) -> None:
    """The output names a folder (outputs keep their input names below it): an existing
    file, or a new name with an audio extension, is refused (``PlanError``) before
    anything is loaded or written, so a file is never treated as a folder."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise PlanError(f"{path}: is an existing file, not an output folder "
                        "(each output keeps its input's name below it)")
    if not os.path.exists(path) and path.lower().endswith(AUDIO_EXTENSIONS):
        raise PlanError(f"{path}: looks like a file name, not an output folder "
                        "(each output keeps its input's name below it)")


def check_not_input_folder(inputs: Sequence[str], out_dir: str) -> None:
    """Refuses (``PlanError``) an output folder that is an input folder, a glob's fixed
    folder or the folder of a named input file: outputs would land among the inputs (and
    over the user's own files there), and the next run would read them back."""
    for item in inputs:
        root = item if os.path.isdir(item) else None
        if root is None and os.path.isfile(item):
            root = os.path.dirname(item) or "."
        if root is None and not os.path.exists(item) and glob.has_magic(item):
            root = _glob_root(item)
        if root is not None and os.path.isdir(root) and os.path.samefile(root, out_dir):
            what = f"the folder of the input file {item}" if os.path.isfile(item) else f"the input folder {item}"
            raise PlanError(f"output folder {out_dir} is {what}: outputs would be "
                            "mixed with the inputs; choose another output folder")


#: In an output folder: one JSON line per output written there (path relative to the
#: folder, size, mtime_ns), so that a rerun replaces its own earlier outputs and nothing else.
OUTPUT_RECORD = ".sslse-outputs.jsonl"


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def recorded_outputs(out_dir: str) -> dict[str, list[int]]:
    """{relative path: [size, mtime_ns]} of what runs wrote in ``out_dir`` (latest wins);
    a damaged line (a run killed mid-write) is ignored, so its file counts as not ours."""
    record: dict[str, list[int]] = {}
    try:
        with open(os.path.join(out_dir, OUTPUT_RECORD), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    record[entry["path"]] = [int(entry["size"]), int(entry["mtime_ns"])]
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return record


def record_output(out_dir: str, dst: str) -> None:
    """Appends ``dst`` (just written below ``out_dir``) to the folder's record."""
    size, mtime = _stamp(dst)
    with open(os.path.join(out_dir, OUTPUT_RECORD), "a", encoding="utf-8") as f:
        f.write(json.dumps({"path": os.path.relpath(dst, out_dir), "size": size, "mtime_ns": mtime}) + "\n")


def _unchanged_output(path: str, out_dir: str, record: dict[str, list[int]]) -> bool:
    """Whether ``path`` is a regular file (not a link, folder or pipe) exactly as a run left
    it in ``out_dir``, by that folder's ``record`` (``recorded_outputs``)."""
    return (os.path.isfile(path) and not os.path.islink(path)
            and record.get(os.path.relpath(path, out_dir)) == _stamp(path))


def check_replaceable(jobs: Sequence[tuple[str, str]], out_dir: str) -> None:
    """Refuses (``PlanError``, one line) jobs whose output already exists in ``out_dir``
    unless an earlier run wrote exactly that file (same size and time): a recording of the
    user's that happens to carry an output's name is never replaced."""
    record = recorded_outputs(out_dir)
    foreign = [dst for _, dst in jobs if os.path.lexists(dst) and not _unchanged_output(dst, out_dir, record)]
    if foreign:
        names = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        kept = os.path.join(out_dir, OUTPUT_RECORD)
        record_note = f"by its record {kept}" if os.path.isfile(kept) else f"it has no record {OUTPUT_RECORD}"
        what = "an existing entry" if len(foreign) == 1 else f"{len(foreign)} existing entries"
        raise PlanError(f"{what} in {out_dir} that no earlier run of this tool wrote "
                        f"there unchanged ({record_note}) would be replaced: {names}; move them or "
                        "choose another output folder")


def check_writable(out_dir: str) -> None:
    """``PlanError`` (one line) when files cannot be written in ``out_dir`` (created here):
    found before hours of enhancement, not after them."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".sslse-write-test-"):
            pass
    except OSError as err:
        raise PlanError(f"cannot write in the output folder {out_dir}: {err.strerror or err}") from None


def plan_outputs(
    inputs: Iterable[str], out_dir: str, suffix: str = ".wav"
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(input, output) jobs mirroring each input's path relative to the folder or glob it
    came from below ``out_dir`` (extension replaced by ``suffix``), and (input, reason)
    for what was skipped. An output folder inside an input folder is not read as input;
    ``PlanError`` when the jobs break a rule of ``check_jobs`` or ``check_replaceable``,
    ``out_dir`` is not a folder or it is an input folder itself."""
    inputs = list(inputs)
    check_output_folder(out_dir)
    if os.path.isdir(out_dir):
        check_not_input_folder(inputs, out_dir)
    found, problems = expand_inputs(inputs, exclude=[out_dir])
    jobs, seen = [], set()
    for path, rel in found:
        dst = os.path.join(out_dir, os.path.splitext(rel)[0] + suffix)
        # the same file named twice for one output (a folder and a glob): once; the same file
        # under two names (a link beside its target) gets both outputs, none dropped unsaid
        if (_real(path), _real(dst)) in seen:
            continue
        seen.add((_real(path), _real(dst)))
        jobs.append((path, dst))
    top = os.path.normpath(os.path.abspath(out_dir))
    outside = [dst for _, dst in jobs  # by name, not by links: what the path says is where it goes
               if not os.path.normpath(os.path.abspath(dst)).startswith(top.rstrip(os.sep) + os.sep)]
    if outside:  # e.g. a path that climbs out with "..": never written beyond the folder asked for
        raise PlanError(f"{len(outside)} output(s) would land outside {out_dir} (first: {outside[0]}); "
                        "give inputs below one folder or glob")
    check_jobs(jobs)
    check_replaceable(jobs, out_dir)
    return jobs, problems
