"""Model folders: what ``EnhanceSSL.from_hparams`` and SpeechBrain's ``foreign_class`` load.

    save_model_folder(model, "my_model", example="noisy.wav")
    EnhanceSSL.from_hparams(source="my_model")

A folder holds ``hyperparams.yaml`` (inference), ``enhancer.ckpt``, ``layer_weights.json``,
``custom_interface.py`` (for ``foreign_class``) and, when an example is given, ``example.wav``
with its enhanced version ``example_enhanced.wav``. The model card (``README.md``) is written by
the caller (``recipes/VCTK/export.py``).

The YAML is not a template: it is written from the arguments each module was constructed
with. ``EnhancementModel`` and ``SSLEncoder`` record them (``capture_init``, as asteroid's
``get_model_args`` and denoiser's ``capture_init`` do), so a new constructor argument travels
into exported folders without touching this file.
"""
from __future__ import annotations

import datetime
import functools
import inspect
import json
import logging
import os
import re
from typing import Any, Callable

import torch
import yaml

from .output_plan import copy_file_atomic, write_text_atomic
from .errors import ConfigError

logger = logging.getLogger(__name__)

FILES = ("hyperparams.yaml", "enhancer.ckpt", "layer_weights.json", "custom_interface.py")
EXAMPLE, EXAMPLE_ENHANCED = "example.wav", "example_enhanced.wav"
#: the foreign_class entry point copied into every folder (see custom_interface.py)
CUSTOM_INTERFACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_interface.py")
# bookkeeping keys of a transformers config that do not shape the model
_DROP_CONFIG_KEYS = {"architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype",
                     "id2label", "label2id"}


# -- constructor arguments -----------------------------------------------------
def capture_init(init: Callable) -> Callable:
    """Decorator for an ``nn.Module.__init__``: after construction, ``self.init_args`` holds
    every constructor argument by name (defaults filled in), so the module can be written
    back as ``!new:`` YAML. A subclass must decorate its own ``__init__``."""
    signature = inspect.signature(init)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{init.__qualname__}: *args cannot be recorded by name")

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        recorded = {}
        for name, value in list(bound.arguments.items())[1:]:  # [0] is self
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(value)
            else:
                recorded[name] = value
        self.init_args = recorded  # set last: the outermost (most derived) __init__ wins

    __init__.captures_init = True
    return __init__


def class_path(module: torch.nn.Module) -> str:
    cls = type(module)
    if not getattr(cls.__init__, "captures_init", False) or not hasattr(module, "init_args"):
        raise TypeError(f"{cls.__qualname__} does not record its constructor arguments; decorate its "
                        "__init__ with speechbrain_sslse.model_folder.capture_init")
    return f"{cls.__module__}.{cls.__qualname__}"


def folder_args(module: torch.nn.Module, ssl_source: str | None = None) -> dict[str, Any]:
    """The constructor arguments that rebuild ``module`` for inference from the folder alone.

    Two adjustments to what it was built with: an ``SSLEncoder`` whose weights travel in
    ``enhancer.ckpt`` (trained, or built from a config) is rebuilt from its config, never from
    a hub id or a local path, and no cache folder of the training machine is kept; an
    ``EnhancementModel`` that ignored its encoder (input ``spectrum``) gets none.
    ``ssl_source``: the name to write for a frozen hub encoder that was loaded from
    elsewhere (a local copy of it)."""
    from .lobes import SSLEncoder
    from .model import EnhancementModel

    args = dict(module.init_args)
    if isinstance(module, SSLEncoder):
        if "cache_dir" in args:
            args["cache_dir"] = None
        if module.backbone_in_checkpoint and "config" in args and not args["config"]:
            config = module.model.config.to_dict()
            args.update(source=None, config={k: v for k, v in config.items()
                                             if k not in _DROP_CONFIG_KEYS and not k.startswith("_")})
        elif not module.backbone_in_checkpoint and "source" in args:
            args["source"] = ssl_source or args["source"]
            if os.path.exists(os.path.expanduser(str(args["source"]))):
                logger.warning("the folder loads its SSL encoder from the local path %s; it will not load "
                               "elsewhere (give the hub id as ssl_source)", args["source"])
    if isinstance(module, EnhancementModel) and module.ssl is None and "ssl_encoder" in args:
        args["ssl_encoder"] = None
    return args


class _New:
    """``!new:<class>`` with keyword arguments."""

    def __init__(self, path: str, kwargs: dict):
        self.path, self.kwargs = path, kwargs


class _Ref(str):
    """``!ref <key>``."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_New, lambda d, v: d.represent_mapping("!new:" + v.path, v.kwargs))
_Dumper.add_representer(_Ref, lambda d, v: d.represent_scalar("!ref", f"<{v}>"))


def _plain(value: Any, where: str) -> Any:
    """YAML-safe copy of an argument value (tuples become lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: cannot write a {type(value).__name__} into hyperparams.yaml")


def _entries(module: torch.nn.Module, key: str, out: dict, ssl_source: str | None) -> None:
    """``out[key]`` = ``!new:`` entry of ``module``; module arguments become entries of their
    own (named after the argument, written first) and are referenced with ``!ref``."""
    path = class_path(module)
    kwargs = {}
    for name, value in folder_args(module, ssl_source).items():
        if isinstance(value, torch.nn.Module):
            _entries(value, name, out, ssl_source)
            kwargs[name] = _Ref(name)
        else:
            kwargs[name] = _plain(value, f"{key}.{name}")
    out[key] = _New(path, kwargs)


def inference_yaml(model: torch.nn.Module, chunk_seconds: float = 30.0, overlap_seconds: float = 1.0,
                   batch_size: int = 4, ssl_source: str | None = None) -> str:
    """``hyperparams.yaml`` for ``EnhanceSSL``: the model's entries from its constructor
    arguments, then ``modules`` and the ``pretrainer`` that loads ``enhancer.ckpt``."""
    from . import __version__

    entries: dict[str, Any] = {}
    _entries(model, "enhancer", entries, ssl_source)
    blocks = [
        {"sample_rate": 16000, "chunk_seconds": float(chunk_seconds), "overlap_seconds": float(overlap_seconds),
         "batch_size": int(batch_size)},
        *({k: v} for k, v in entries.items()),
        {"modules": {"enhancer": _Ref("enhancer")}},
        {"pretrainer": _New("speechbrain.utils.parameter_transfer.Pretrainer",
                            {"loadables": {"enhancer": _Ref("enhancer")}})},
    ]
    head = (f"# speechbrain-sslse {__version__} inference hyperparameters (written {datetime.date.today()})\n"
            "# Load with EnhanceSSL.from_hparams(source=<this folder or its Hub id>), or with SpeechBrain's\n"
            "# foreign_class(source=..., pymodule_file=\"custom_interface.py\", classname=\"EnhanceSSL\").\n"
            "# chunk_seconds: longer inputs are enhanced in chunks overlapping by overlap_seconds.\n")
    body = "\n".join(yaml.dump(b, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
                     for b in blocks)
    return head + re.sub(r"!ref '(<[A-Za-z_][A-Za-z0-9_]*>)'", r"!ref \1", body)  # SpeechBrain's spelling


# -- the folder ------------------------------------------------------------------
def _same_state(path: str, state: dict[str, torch.Tensor]) -> bool:
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: write a new one
        return False
    return (isinstance(old, dict) and old.keys() == state.keys()
            and all(old[k].dtype == v.dtype and torch.equal(old[k], v.cpu()) for k, v in state.items()))


def save_checkpoint(model: torch.nn.Module, path: str) -> bool:
    """Writes ``model``'s checkpoint state; a file that already holds exactly these tensors
    is left as it is (re-exports do not rewrite unchanged weights). True if written."""
    state = model.checkpoint_state_dict()
    if os.path.isfile(path) and _same_state(path, state):
        return False
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return True


def enhance_example(model: torch.nn.Module, example: str, out_folder: str, **hparams) -> str:
    """Copies ``example`` into the folder as ``example.wav`` (a WAV's bytes unchanged; any
    other format, e.g. FLAC or MP3, decoded and written as WAV, so the name tells the truth)
    and enhances it through ``EnhanceSSL.enhance_file`` on CPU, on a copy of ``model`` (the
    caller's model keeps its device, train mode and gradients), written with ``write_audio``
    as ``sslse-enhance`` writes its outputs."""
    import copy

    import soundfile as sf

    from .audio import read_audio, sf_path, write_audio
    from .inference import EnhanceSSL

    target = os.path.join(out_folder, EXAMPLE)
    if os.path.abspath(example) != os.path.abspath(target):
        wav, rate = read_audio(example)  # one AudioError for a broken file, before anything is copied
        try:
            is_wav = sf.info(sf_path(example)).format in ("WAV", "WAVEX", "RF64")
        except Exception:  # noqa: BLE001 - MP3 through our own reader, not libsndfile
            is_wav = False
        if is_wav:
            copy_file_atomic(example, target)  # (a linked example.wav is replaced, not written through)
        else:
            write_audio(target, wav, rate)
    copied = copy.deepcopy(model).cpu()
    enhancer = EnhanceSSL(modules={"enhancer": copied}, hparams={"enhancer": copied, **hparams}, run_opts={"device": "cpu"})
    enhanced = os.path.join(out_folder, EXAMPLE_ENHANCED)
    out, rate = enhancer.enhance_file(target), sf.info(sf_path(target)).samplerate  # at the clip's own rate
    # the file there already holds these samples (a re-export), up to float rounding (1e-6; CPUs
    # differ in the last bits): its bytes stay (libsndfile's float-WAV PEAK chunk carries a
    # timestamp, so a rewrite would change a shipped file for nothing)
    if not _holds_samples(enhanced, out, rate):
        write_audio(enhanced, out, rate)
    return enhanced


def _holds_samples(path: str, wav: torch.Tensor, rate: int) -> bool:
    """Whether ``path`` is a float WAV of ``wav`` at ``rate`` (False when missing or unreadable)."""
    import numpy as np
    import soundfile as sf

    from .audio import sf_path

    try:
        with sf.SoundFile(sf_path(path)) as f:  # one open for its subtype, rate and samples
            subtype, old_rate, old = f.subtype, f.samplerate, f.read(dtype="float32", always_2d=True)
    except (RuntimeError, OSError):  # (soundfile's errors are RuntimeErrors)
        return False
    new = wav.detach().cpu().numpy()
    new = new[:, None] if new.ndim == 1 else new.T  # (samples, channels), as soundfile reads
    return (subtype == "FLOAT" and old_rate == rate and old.shape == new.shape
            and bool(np.allclose(old, new, rtol=0, atol=1e-6)))


def export_target(out_folder: str, model: torch.nn.Module) -> str:
    """What writing ``model``'s folder into ``out_folder`` would do: "new" (no folder, or an
    empty one), "same" (a model folder holding exactly these tensors: a re-export) or
    "other" (a model folder of another model). A training folder (``save/``) or a folder
    of other files is refused (``ConfigError``): exporting there would replace a training
    run's ``hyperparams.yaml`` or a user's own ``README.md`` and ``example.wav``."""
    if os.path.exists(out_folder) and not os.path.isdir(out_folder):
        raise ConfigError(f"{out_folder}: is a file, not a model folder")
    entries = sorted(os.listdir(out_folder)) if os.path.isdir(out_folder) else []
    if not entries:
        return "new"
    if os.path.isdir(os.path.join(out_folder, "save")):
        raise ConfigError(f"{out_folder}: is a training folder (save/ holds its checkpoints); "
                          "export into a model folder of its own")
    ckpt = os.path.join(out_folder, "enhancer.ckpt")
    if not (os.path.isfile(ckpt) and os.path.isfile(os.path.join(out_folder, "hyperparams.yaml"))):
        raise ConfigError(f"{out_folder}: holds files that are not a model folder ({', '.join(entries[:5])}"
                          f"{' ...' if len(entries) > 5 else ''}); export into a new or empty folder")
    model = getattr(model, "module", model)
    return "same" if _same_state(ckpt, model.checkpoint_state_dict()) else "other"


def save_model_folder(model: torch.nn.Module, out_folder: str, card: str | None = None,
                      example: str | None = None, ssl_source: str | None = None,
                      chunk_seconds: float = 30.0, overlap_seconds: float = 1.0, batch_size: int = 4,
                      replace: bool = False) -> str:
    """Writes the model folder of an in-memory ``EnhancementModel`` (see the module docstring).

    card: ``README.md`` text (None: no card is written, an existing one is kept).
    example: a short noisy audio file to ship as ``example.wav`` with its enhanced version.
    None when replacing another model removes that model's example files: its
    ``example_enhanced.wav`` is that model's output and must not ship as this one's.
    ssl_source: hub id to name for a frozen encoder that was loaded from a local copy.
    replace: allow replacing another model's folder (``export_target`` "other"); without
    it that is a ``ConfigError``, so a model is never lost to a mistyped path.
    Other files already in the folder (an ``eval/`` folder, say) are left alone."""
    model = getattr(model, "module", model)  # DDP / DataParallel wrapper
    replacing = export_target(out_folder, model) == "other"
    if replacing and not replace:
        raise ConfigError(f"{out_folder} holds another model (its enhancer.ckpt differs); "
                          "replace it explicitly (export.py --replace) or choose another folder")
    yaml_text = inference_yaml(model, chunk_seconds, overlap_seconds, batch_size, ssl_source)
    if example is not None:  # a broken clip is one AudioError before the folder changes, not half a folder
        from .audio import read_audio

        read_audio(example)
    os.makedirs(out_folder, exist_ok=True)
    save_checkpoint(model, os.path.join(out_folder, "enhancer.ckpt"))
    write_text_atomic(os.path.join(out_folder, "hyperparams.yaml"), yaml_text)
    weights = model.layer_weights
    write_text_atomic(os.path.join(out_folder, "layer_weights.json"), json.dumps(
        {"layers": model.ssl.layer_ids if model.ssl is not None else [],
         "weights": weights.tolist() if weights is not None else []}, indent=1))
    target = os.path.join(out_folder, "custom_interface.py")
    if os.path.abspath(target) != CUSTOM_INTERFACE:
        copy_file_atomic(CUSTOM_INTERFACE, target)
    if example is not None:
        enhance_example(model, example, out_folder, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                        batch_size=batch_size)
    elif replacing:
        for name in (EXAMPLE, EXAMPLE_ENHANCED):
            if os.path.isfile(os.path.join(out_folder, name)):
                os.remove(os.path.join(out_folder, name))
    if card is not None:
        write_text_atomic(os.path.join(out_folder, "README.md"), card)
    return out_folder
