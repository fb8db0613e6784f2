#!/usr/bin/env python3
"""Recipe: SSL (+ log1p) mask-based speech enhancement on VoiceBank-DEMAND.

    python recipes/VCTK/train.py hparams/smoke.yaml            # embedded mini set, CPU, ~1 min
    python recipes/VCTK/train.py hparams/wavlm_ws_log1p.yaml --data_folder=/data/VBD
    torchrun --nproc_per_node=4 recipes/VCTK/train.py hparams/<row>.yaml --data_folder=...

Hung et al., "Boosting Self-Supervised Embeddings for Speech Enhancement", Interspeech 2022.
"""
from __future__ import annotations

import json
import os
import re
import sys

import speechbrain_sslse  # noqa: F401  (first: it quiets SpeechBrain's torchvision notice)
import speechbrain as sb
import torch
import yaml
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger
from speechbrain.utils.fetching import FetchConfig
from speechbrain.utils.parameter_transfer import Pretrainer

from speechbrain_sslse import metrics
from speechbrain_sslse.plots import plot_training_curves, plot_weight_history
from speechbrain_sslse.audio import AudioError, write_audio
from speechbrain_sslse.checkpoints import (AVERAGED, CheckpointError, average_last_epochs, best_checkpoint,
                                          check_checkpoints, keep_best)
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.output_plan import write_text_atomic
from speechbrain_sslse.data import EpochCrops, separate_rank_streams, validation_crop_pair
from speechbrain_sslse.hparams import load_hparams, resolved_yaml
from speechbrain_sslse.inference import folder_ssl_source
from speechbrain_sslse.data_prep import PrepError, check_data_folders, check_same_source, prepare_vctk
from speechbrain_sslse.mixing import DynamicMixDataset
from speechbrain_sslse.ssl_loader import source_model_type

logger = get_logger(__name__)


def floored(name: str):
    """``metrics.<name>(reference, estimate)`` for MetricStats' (predict, target) order, with
    the metric's floor for an estimate it cannot score."""
    fn = {"pesq": metrics.pesq_wb, "stoi": metrics.stoi}[name]

    def score(predict: torch.Tensor, target: torch.Tensor) -> float:
        try:
            return fn(target.numpy(), predict.numpy())
        except metrics.MetricError:
            return metrics.FLOORS[name]

    return score


class SSLSEBrain(sb.Brain):
    """One Brain for every row of the paper: the ``enhancer`` module decides the input."""

    @property
    def enhancer(self):
        """The unwrapped enhancer (``self.modules.enhancer`` may be a DDP wrapper)."""
        return self.hparams.enhancer

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        noisy, lens = batch.noisy_sig
        return self.modules.enhancer(noisy, lens)

    def compute_objectives(self, out, batch, stage):
        clean, lens = batch.clean_sig
        target = self.enhancer.log_spectrum(clean, lens)
        # Mean L1 between enhanced and clean log1p spectra (frames past each end masked).
        loss = sb.nnet.losses.l1_loss(out.enhanced, target, length=lens)
        if stage != sb.Stage.TRAIN:
            wavs = self.enhancer.resynthesize(out).float()
            for stats in self.scores.values():
                stats.append(batch.id, predict=wavs, target=clean.float(), lengths=lens)
            if stage == sb.Stage.TEST:  # float WAV: no clipping or quantisation of the output
                for uid, wav, n in zip(batch.id, wavs, out.sample_lens.tolist()):
                    write_audio(os.path.join(self.hparams.enhanced_folder, f"{uid}.wav"), wav[:n].cpu(), subtype="FLOAT")
        return loss

    def on_stage_start(self, stage, epoch=None):
        # per-utterance PESQ / STOI through SpeechBrain's MetricStats; an utterance a metric
        # cannot score counts at that metric's floor (never skipped)
        self.scores = {name: sb.utils.metric_stats.MetricStats(metric=floored(name), batch_eval=False)
                       for name in ("pesq", "stoi")}
        train_set = getattr(self, "train_set", None)
        if stage == sb.Stage.TRAIN and train_set is not None:
            # before the loader's workers start: examples of this epoch = f(seed, epoch, index)
            train_set.set_epoch(epoch)

    def stage_stats(self, stage_loss: float) -> dict:
        return {"loss": stage_loss, **{name: s.summarize("average") for name, s in self.scores.items()}}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = self.stage_stats(stage_loss)
        if stage == sb.Stage.VALID:
            # saved before it is logged: a job killed mid-save redoes the epoch without a
            # second line for it in train_log.txt or layer_weights.jsonl
            self.checkpointer.save_and_keep_only(  # averages are never deleted here
                meta=stats, num_to_keep=self.hparams.ckpt_num_to_keep, **keep_best(self.hparams.ckpt_key),
                ckpt_predicate=lambda c: AVERAGED not in c.meta,
            )
            weights = self.enhancer.layer_weights
            if weights is not None and if_main_process():
                with open(os.path.join(self.hparams.output_folder, "layer_weights.jsonl"), "a") as f:
                    f.write(json.dumps({"epoch": epoch, "weights": weights.tolist()}) + "\n")
                logger.info("epoch %d layer weights: %s", epoch, " ".join(f"{w:.3f}" for w in weights.tolist()))
            self.hparams.train_logger.log_stats(
                {"epoch": epoch}, train_stats={"loss": self.train_loss}, valid_stats=stats
            )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            self.test_stats = stats

    def add_average(self, count: int, valid_set, loader_kwargs: dict) -> dict:
        """Checkpoint averaging: the mean of the last ``count`` epochs' weights, scored on the
        validation set and saved as one more checkpoint, so the best-by-``ckpt_key`` choice
        (test, export) weighs it against the single epochs; resuming skips it."""
        state, epochs = average_last_epochs(self.checkpointer, count)
        span = f"{epochs[0]}-{epochs[-1]}"
        done = [c for c in self.checkpointer.list_checkpoints() if c.meta.get(AVERAGED) == span]
        if done:  # a rerun of a finished folder: that mean is already a candidate
            logger.info("average of epochs %s already kept in %s", span, done[0].path)
            return done[0].meta
        # strict, but a frozen hub encoder's weights are never in a checkpoint (nor in the mean)
        self.enhancer.load_checkpoint_state(state)
        # every rank scores the whole set (no DDP sampler): the same stats on each
        loader = sb.dataio.dataloader.make_dataloader(valid_set, **loader_kwargs)
        self.on_stage_start(sb.Stage.VALID)
        self.modules.eval()
        loss = 0.0
        with torch.no_grad():
            for i, batch in enumerate(loader, 1):
                loss += (float(self.evaluate_batch(batch, stage=sb.Stage.VALID)) - loss) / i
        stats = self.stage_stats(loss)
        self.hparams.train_logger.log_stats({"average of epochs": span}, valid_stats=stats)
        self.checkpointer.save_checkpoint(meta={**stats, AVERAGED: span})
        return stats

    def init_optimizers(self):
        """SpeechBrain's two-optimiser idiom (cf. its CommonVoice wav2vec recipe): Brain
        clips only the first param group of each optimiser, so one optimiser per lr."""
        self.optimizer = self.hparams.head_opt_class(self.enhancer.head_parameters())
        self.optimizers_dict = {"head": self.optimizer}
        ssl_params = self.enhancer.ssl_parameters()
        if ssl_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(ssl_params)
            self.optimizers_dict["ssl"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(f"{name}_optimizer", opt)


def _mixing_or_config_error(build, *args, **kwargs):
    """A dynamic-mixing set that cannot be built (a noise that is silent, pairs that do not
    pair) is one error line, like any other setting that cannot train."""
    try:
        return build(*args, **kwargs)
    except (ValueError, AudioError) as err:
        raise ConfigError(str(err)) from None


def check_training_settings(hparams: dict) -> None:
    """One-line errors for settings that cannot train (before any folder is touched)."""
    for key, least in (("batch_size", 1), ("crop_samples", 1), ("dm_items_per_epoch", 1), ("number_of_epochs", 0)):
        value = hparams.get(key)  # 0 epochs: evaluate what is there
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ConfigError(f"{key} must be a whole number >= {least}, got {value!r}")
    for key in ("lr", "ssl_lr"):
        value = hparams.get(key)
        if not isinstance(value, (int, float)) or not value > 0:
            hint = ""
            try:  # YAML 1.1 reads 1e-5 (no dot) as text
                hint = f" (YAML reads it as text: write {float(value):.1e})" if isinstance(value, str) else ""
            except ValueError:
                pass
            raise ConfigError(f"{key} must be a number > 0, got {value!r}{hint}")
    workers = hparams.get("num_workers", 0)
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"num_workers must be a whole number >= 0, got {workers!r}")
    if (hparams.get("train_dataloader_options") or {}).get("persistent_workers"):
        raise ConfigError("train_dataloader_options: persistent_workers would keep the epoch each loader worker "
                          "started with, so every epoch would draw the first one's crops or mixtures; leave it off")
    counts = hparams.get("average_last_epochs") or []
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
        raise ConfigError(f"average_last_epochs must be a list of whole numbers >= 1, got {counts!r}")
    # one of the newest checkpoints kept may be a mid-epoch one: keep one more than averaged
    if counts and (max(counts) >= hparams["ckpt_num_to_keep"] or max(counts) > hparams["number_of_epochs"]):
        raise ConfigError(f"average_last_epochs {counts} needs the last {max(counts)} epoch checkpoints: "
                          f"ckpt_num_to_keep ({hparams['ckpt_num_to_keep']}) must be >= {max(counts) + 1} and "
                          f"number_of_epochs ({hparams['number_of_epochs']}) >= {max(counts)}")
    low, high = hparams["gain_range"]
    if not 0 < low <= high:
        raise ConfigError(f"gain_range must be [low, high] with 0 < low <= high, got {hparams['gain_range']}")
    record = os.path.join(str(hparams.get("data_folder")), "simulation.json")
    if hparams.get("dynamic_mixing") and hparams.get("valid_split") != "folder":
        # the mixing pool is every file of the training speakers: validation carved out of them
        # (random / authors / speakers) would be trained on
        raise ConfigError(f"dynamic mixing draws from every utterance of the training speakers, so validation "
                          f"must be the rendered validset folder: set --valid_split=folder (got "
                          f"{hparams.get('valid_split')!r})")
    if hparams.get("dynamic_mixing") and not os.path.isfile(record):
        raise ConfigError(f"dynamic mixing draws its training speech and noise from a set rendered by "
                          f"simulate_vbd.py, but {record} does not exist (README: 'Dynamic mixing')")


#: Settings that decide the model's shape or what its weights mean: a folder trained with
#: other values cannot be resumed (and would no longer load for inference).
MODEL_KEYS = ("input", "ssl_source", "ssl_config", "ssl_mode", "ssl_output", "ssl_layers")
#: Settings a resumed run may change: how long it runs, what it keeps, how it loads, and where
#: the data lives (check_same_source checks the data itself). Any other change would not take
#: effect (the optimiser state brings its lr back) or would mix two runs in one folder (a
#: validation loss measured two ways, another noise set), so it is refused.
RESUMABLE_KEYS = ("number_of_epochs", "epoch_counter", "average_last_epochs", "ckpt_num_to_keep",
                  "ckpt_interval_minutes", "num_workers", "init_from", "data_folder", "test_pairs",
                  "skip_prep", "ssl_cache_dir", "experiment")
#: Settings that hold CLEAN_DIR:NOISY_DIR folders: compared as real paths (relative or
#: absolute spellings of one folder are one setting).
PAIR_KEYS = ("dm_noise_pairs",)


class _Built(dict):
    """A tagged node (``!new:``, ``!apply:``, ...): an object built from other settings."""


def _settings(yaml_text: str) -> dict:
    """A saved hyperparams.yaml as data: tagged nodes (!new, !apply, ...) become ``_Built``
    mappings of their arguments."""
    class _Loader(yaml.SafeLoader):
        pass

    def plain(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return _Built({suffix: loader.construct_mapping(node, deep=True)})
        if isinstance(node, yaml.SequenceNode):
            return _Built({suffix: loader.construct_sequence(node, deep=True)})
        return _Built({suffix: loader.construct_scalar(node)})

    _Loader.add_multi_constructor("!", plain)
    data = yaml.load(yaml_text, Loader=_Loader) or {}
    return data if isinstance(data, dict) else {}


def _model_settings(data: dict) -> dict:
    enhancer = next(iter(data.get("enhancer").values()), None) if isinstance(data.get("enhancer"), dict) else None
    enhancer = enhancer if isinstance(enhancer, dict) else {}
    return {k: data.get(k) for k in MODEL_KEYS} | {k: enhancer.get(k) for k in ("hidden_size", "num_layers")}


def _comparable(value, folder: str):
    """A setting as resuming compares it: paths inside the run folder relative to it (a moved
    folder resumes), dataloader options without num_workers (how fast, not what is loaded)."""
    if isinstance(value, dict):
        return {k: _comparable(v, folder) for k, v in value.items() if k != "num_workers"}
    if isinstance(value, list):
        return [_comparable(v, folder) for v in value]
    if isinstance(value, str) and folder and (value == folder or value.startswith(folder.rstrip("/") + "/")):
        return "<output_folder>" + value[len(folder.rstrip("/")):]
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # YAML 1.1 reads 1e-05 as text
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _base_defaults() -> dict:
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "hparams",
                               "base.yaml"), encoding="utf-8") as f:
            return _settings(f.read())
    except (OSError, yaml.YAMLError):
        return {}


def _real_pairs(value):
    if isinstance(value, list):
        return [":".join(os.path.realpath(p) for p in v.split(":")) if isinstance(v, str) else v for v in value]
    return value


def check_same_model(output_folder: str, resolved: str) -> None:
    """Refuses, before the folder changes, to rerun a folder that holds checkpoints with
    settings that build another model, or that train it otherwise than its checkpoints were
    trained (outside RESUMABLE_KEYS); names the keys that differ."""
    saved = os.path.join(output_folder, "hyperparams.yaml")
    save_dir = os.path.join(output_folder, "save")
    has_ckpt = os.path.isdir(save_dir) and any(d.startswith("CKPT") for d in os.listdir(save_dir))
    if not (has_ckpt and os.path.isfile(saved)):
        return
    try:
        before = _settings(open(saved, encoding="utf-8").read())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{saved}: unreadable ({err}); move the folder aside or choose another output_folder") from None
    now = _settings(resolved)

    def diffs(old: dict, new: dict, keys) -> str:
        return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)

    old_model, new_model = _model_settings(before), _model_settings(now)
    changed = [k for k in new_model if old_model.get(k) != new_model[k]]
    if changed:
        raise ConfigError(f"{output_folder} holds checkpoints of another model ({diffs(old_model, new_model, changed)}); "
                          "choose another --output_folder (or --experiment) to train this one, or move that folder aside")
    # built objects (optimisers, checkpointer, counter, ...) are made from these settings
    # (the enhancer's own arguments were compared above)
    old_dir, new_dir = str(before.get("output_folder") or ""), str(now.get("output_folder") or "")
    for key in PAIR_KEYS:
        for side in (before, now):
            if key in side:
                side[key] = _real_pairs(side[key])
    # a key the folder's file lacks came with newer code: compared with base.yaml's default
    # (what the older code ran); one only the folder has went with older code: not compared
    defaults = _base_defaults()
    before = {**{k: defaults[k] for k in now if k not in before and k in defaults}, **before}
    changed = [k for k in before if k in now and k not in RESUMABLE_KEYS
               and not isinstance(before[k], _Built) and not isinstance(now[k], _Built)
               and _comparable(before[k], old_dir) != _comparable(now[k], new_dir)]
    if changed:
        raise ConfigError(f"{output_folder} holds checkpoints trained with other settings ({diffs(before, now, changed)}); "
                          "resuming would keep the old optimiser state and mix two runs in one folder. Give the "
                          "folder's settings to resume it, or another --output_folder (or --experiment) to train "
                          f"with these (a resumed run may change only {', '.join(RESUMABLE_KEYS)})")


def check_manifest(path: str) -> None:
    """A malformed manifest is one error naming its file, not a traceback mid-training."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not data:
            raise ValueError("expected a non-empty JSON object of utterances")
        for uid, entry in data.items():
            if not isinstance(entry, dict) or not {"noisy_wav", "clean_wav"} <= set(entry):
                raise ValueError(f"entry {uid!r} lacks noisy_wav / clean_wav")
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: malformed manifest ({err}); delete it to have it rebuilt") from None


def _encoder_name(source) -> str:
    """``microsoft/wavlm-base-plus`` and a local copy in ``.../wavlm-base-plus/`` compare equal."""
    return os.path.basename(os.path.normpath(str(source)))


def _source_run_encoder(source: str) -> str | None:
    """The hub encoder the run or export that wrote ``source`` used, when its folder says:
    an exported folder (hyperparams.yaml beside the checkpoint) or a recipe checkpoint
    (``<run>/save/CKPT+.../enhancer.ckpt``, ``<run>/hyperparams.yaml``)."""
    folder = os.path.dirname(os.path.abspath(source))
    if os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        return folder_ssl_source(folder)
    run = os.path.join(folder, os.pardir, os.pardir, "hyperparams.yaml")
    try:
        settings = _settings(open(run, encoding="utf-8").read())
    except (OSError, yaml.YAMLError):
        return None
    return settings.get("ssl_source") if settings.get("input") in ("ssl", "cross") else None


def check_init_from(hparams: dict, source: str) -> None:
    """A warm start must give the model it claims. Refused: encoder weights (from a PF, EF or
    TFS run) into a frozen encoder, which its checkpoints would not keep (export and resume
    would rebuild the hub encoder: another model); a head trained on one hub encoder put on
    another of the same shape (wav2vec 2.0 / HuBERT Base), which loads without a mismatch."""
    ssl = getattr(hparams["enhancer"], "ssl", None)
    if ssl is None:
        return
    try:
        keys = torch.load(source, map_location="cpu", mmap=True).keys()
    except Exception as err:  # torch's own message, on one line
        raise ConfigError(f"init_from: {source}: not an enhancer checkpoint ({err})") from None
    has_encoder = any(k.startswith("ssl.model.") for k in keys)
    if has_encoder and not ssl.backbone_in_checkpoint:
        raise ConfigError(f"init_from: {source} holds SSL encoder weights (a partial, entire or scratch run), "
                          "but this run's encoder is frozen and rebuilt from ssl_source at every load, so its "
                          "checkpoints would not keep them: train with that run's ssl_mode, or warm-start from "
                          "a frozen-encoder checkpoint")
    used = None if has_encoder else _source_run_encoder(source)
    ours = hparams["ssl_source"]
    if used and hparams["ssl_mode"] != "scratch" and _encoder_name(used) != _encoder_name(ours):
        message = (f"init_from: {source} was trained on the encoder {used}, this run loads {ours}; "
                   f"give --ssl_source={used}")
        kinds = {source_model_type(used), source_model_type(ours)}
        local = any(os.path.isdir(os.path.expanduser(str(p))) for p in (used, ours))
        if (None not in kinds and len(kinds) > 1) or not local:
            raise ConfigError(message)
        # a local copy may carry any folder name (an HF cache snapshot: a hash): said, not refused
        logger.warning("%s, unless %s is a copy of it", message, ours)


def warm_start(hparams: dict, source: str, output_folder: str) -> None:
    """Load an exported or recipe ``enhancer.ckpt`` into ``enhancer`` (fine-tuning) through
    SpeechBrain's Pretrainer; Brain.fit then recovers this run's own checkpoint, if any,
    on top, so an interrupted fine-tuning run resumes where it stopped."""
    if not os.path.isfile(source):
        raise ConfigError(f"init_from: no such file: {source}")
    check_init_from(hparams, source)
    enhancer = hparams["enhancer"]
    pretrainer = Pretrainer(
        collect_in=os.path.join(output_folder, "init_from"),
        loadables={"enhancer": enhancer},
        paths={"enhancer": os.path.abspath(source)},
    )
    # overwrite: the collected file is a symlink in this run's own folder; without it SpeechBrain
    # keeps the link an earlier run made, so a changed --init_from would silently load the old
    # weights (the source file itself is never touched)
    run_on_main(pretrainer.collect_files, kwargs={"fetch_config": FetchConfig(overwrite=True)})
    try:
        pretrainer.load_collected()
    except RuntimeError as err:  # another model's weights: one line, with the line that says why
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                   lines[0] if lines else "")
        raise ConfigError(f"init_from: {source} does not fit this model ({why[:300]})") from None
    logger.info("warm start: enhancer weights from %s", source)


VALID_MODES = ("crop", "whole")


def dataio_prep(hparams: dict) -> dict:
    """Train items: one random 1.28 s crop (tiled if shorter, random offset) with a shared
    random gain (``EpochCrops``), or dynamic mixtures; valid items: one 1.28 s crop per
    utterance and epoch without gain (``valid_mode: crop``, the authors' validation loss) or
    whole utterances (``valid_mode: whole``); test items: whole utterances."""
    crop = hparams["crop_samples"]
    low, high = hparams["gain_range"]
    valid_mode = hparams.get("valid_mode", "whole")
    if valid_mode not in VALID_MODES:
        raise ConfigError(f"valid_mode must be one of {VALID_MODES}, got {valid_mode!r}")
    seed, counter = hparams["seed"], hparams["epoch_counter"]

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def eval_pipeline(noisy_wav, clean_wav):
        yield sb.dataio.dataio.read_audio(noisy_wav)
        yield sb.dataio.dataio.read_audio(clean_wav)

    @sb.utils.data_pipeline.takes("id", "noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def valid_crop_pipeline(uid, noisy_wav, clean_wav):
        # the epoch being validated (the counter has advanced to it); the crop depends on
        # (seed, epoch, id) only, so reruns and resumed runs validate on the same crops
        noisy, clean = sb.dataio.dataio.read_audio(noisy_wav), sb.dataio.dataio.read_audio(clean_wav)
        noisy, clean = validation_crop_pair(noisy, clean, seed, counter.current, uid, crop)
        yield noisy
        yield clean

    pipelines = {"train": eval_pipeline, "valid": valid_crop_pipeline if valid_mode == "crop" else eval_pipeline,
                 "test": eval_pipeline}
    datasets = {}
    for name in ("train", "valid", "test"):
        datasets[name] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=hparams[f"{name}_annotation"],
            dynamic_items=[pipelines[name]],
            output_keys=["id", "noisy_sig", "clean_sig"],
        )
    described = {"crop": f"one random {crop}-sample crop per utterance and epoch, no gain, seed {seed}",
                 "whole": "whole utterances"}[valid_mode]
    message = (f"validation: valid_mode={valid_mode} ({described}); valid_split={hparams['valid_split']}, "
               f"{len(datasets['valid'])} utterances")
    logger.info(message)
    if if_main_process():  # also in train_log.txt, beside the losses it explains
        with open(hparams["train_log"], "a", encoding="utf-8") as f:
            f.write(message + "\n")
    if hparams.get("dynamic_mixing"):  # training mixtures drawn on the fly (mixing.py)
        # real pairs whose noise (noisy - clean) joins the training noises; null: those the
        # rendered set names in its simulation.json (simulate_vbd.py --train_noise_pairs)
        pairs = {} if hparams.get("dm_noise_pairs") is None else {"noise_pairs": list(hparams["dm_noise_pairs"])}
        datasets["train"] = _mixing_or_config_error(DynamicMixDataset.from_simulation,
            os.path.join(hparams["data_folder"], "simulation.json"), items_per_epoch=hparams["dm_items_per_epoch"],
            crop=crop, snrs=hparams["dm_snrs"], snr_range=hparams["dm_snr_range"], gain_range=(low, high),
            babble_tracks=hparams["dm_babble_tracks"], ssn_tracks=hparams["dm_ssn_tracks"],
            noise_speed_range=hparams.get("dm_noise_speed_range"), noise_eq_db=hparams.get("dm_noise_eq_db", 0.0),
            second_noise_prob=hparams.get("dm_second_noise_prob", 0.0),
            speech_speed_range=hparams.get("dm_speech_speed_range"), speech_eq_db=hparams.get("dm_speech_eq_db", 0.0),
            seed=hparams["seed"], **pairs)
        mixing = datasets["train"]
        kinds = [name.split(":")[0] if ":" in name else "recording" for name in mixing.noise_names]
        message = (f"dynamic mixing: {len(mixing.speech)} training utterances, {len(kinds)} noises ("
                   + ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)) + ")")
        logger.info(message)
        if if_main_process():
            with open(hparams["train_log"], "a", encoding="utf-8") as f:
                f.write(message + "\n")
        return datasets
    # whole training pairs -> one crop and gain per example, a function of (seed, epoch, index);
    # train_repeats > 1 (small sets): several crops of each pair per epoch
    datasets["train"] = EpochCrops(datasets["train"], crop, (low, high), hparams["seed"],
                                   repeats=int(hparams.get("train_repeats", 1)))
    return datasets


def main(argv: list[str]) -> SSLSEBrain:
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    check_training_settings(hparams)
    resolved = resolved_yaml(hparams_file, overrides)
    # before anything in the folder changes: a rerun must build the model it resumes
    check_same_model(hparams["output_folder"], resolved)
    if not hparams["skip_prep"]:  # ... and train on the data it records
        check_same_source(hparams["output_folder"], hparams["data_folder"], hparams.get("test_pairs"))
        if not os.path.isfile(hparams["train_annotation"]):  # to be prepared: no run folder for missing data
            check_data_folders(hparams["data_folder"], hparams.get("test_pairs"))

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    if if_main_process():  # the resolved, self-contained file (rows only hold overrides)
        write_text_atomic(os.path.join(hparams["output_folder"], "hyperparams.yaml"), resolved)
    run_on_main(
        prepare_vctk,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "valid_split": hparams["valid_split"],
            "seed": hparams["seed"],
            "skip_prep": hparams["skip_prep"],
            "test_pairs": hparams.get("test_pairs"),
            "written": [hparams["save_folder"], hparams["enhanced_folder"]],  # wherever they were moved
        },
    )
    run_on_main(check_checkpoints, args=[hparams["checkpointer"]])
    for name in ("train", "valid", "test"):
        check_manifest(hparams[f"{name}_annotation"])
    datasets = dataio_prep(hparams)
    run_on_main(os.makedirs, args=[hparams["enhanced_folder"]], kwargs={"exist_ok": True})

    if hparams["init_from"]:
        warm_start(hparams, hparams["init_from"], hparams["output_folder"])
    brain = SSLSEBrain(
        modules={"enhancer": hparams["enhancer"]},
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.train_set = datasets["train"]  # told each epoch before its examples are drawn
    # SpeechBrain seeds all ranks alike; from here (model built) each rank has its own global stream
    # (dropout, encoder masking); crops, gains and mixtures draw from (seed, epoch, index)
    separate_rank_streams(hparams["seed"], torch.distributed.get_rank() if torch.distributed.is_initialized() else 0)
    # PaddedBatch is set explicitly because the training sets (EpochCrops, DynamicMixDataset)
    # are no DynamicItemDataset, for which SpeechBrain would pick it automatically.
    train_kwargs = {"collate_fn": sb.dataio.batch.PaddedBatch, **hparams["train_dataloader_options"]}
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=hparams["eval_dataloader_options"],
    )
    for count in hparams.get("average_last_epochs") or []:  # checkpoint averaging (optional)
        brain.add_average(count, datasets["valid"], hparams["eval_dataloader_options"])
    weights_log = os.path.join(hparams["output_folder"], "layer_weights.jsonl")
    if if_main_process() and os.path.exists(weights_log):  # the weights as a picture, too
        plot_weight_history(weights_log, os.path.join(hparams["output_folder"], "layer_weights.png"))
    if if_main_process() and os.path.exists(hparams["train_log"]):  # the curves as a picture, too
        plot_training_curves(hparams["train_log"], os.path.join(hparams["output_folder"], "training_curves.png"))
    brain.evaluate(datasets["test"], test_loader_kwargs=hparams["eval_dataloader_options"],
                   **best_checkpoint(hparams["ckpt_key"]))
    if torch.distributed.is_initialized():  # without this, gloo ranks can hang at exit
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return brain


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ConfigError, PrepError, CheckpointError) as err:  # one clear line, before training
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
