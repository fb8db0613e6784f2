"""Console commands: ``sslse-enhance``, ``sslse-evaluate``, ``sslse-analyze``.

Only argument parsing and reporting live here; the work is done by the library
(``output_plan`` + ``EnhanceSSL.enhance_files``, ``evaluation``, ``analysis``). Every
error a user can cause is one ``error: ...`` line and exit code 2, before heavy work.
"""
from __future__ import annotations

import argparse
import functools
import glob
import logging
import os
import sys
import warnings

from . import __version__


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, epilog examples kept as written."""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line (``prog: error: ...``, exit 2); --help has the rest."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(least: int):
    """An argparse type: an int >= ``least`` (one line naming the bound otherwise)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, got {value}")
        return value

    return parse


positive_int, non_negative_int = whole_number(1), whole_number(0)


def _parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    ap = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_Formatter)
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars or third-party notices")
    return ap


def _parse(ap: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace | None, int]:
    """(args, 0), or (None, exit code) after --help, --version or a usage error, so that
    the ``*_main`` functions return their exit code instead of raising SystemExit."""
    try:
        return ap.parse_args(argv), 0
    except SystemExit as stop:
        return None, int(stop.code or 0)


def _quiet_third_parties(quiet: bool) -> None:
    """Library notices (transformers' load reports, torchvision hints) are not the
    command's output; with -q, progress bars go too."""
    from .errors import DataWarning
    from .progress import show_progress

    show_progress(not quiet)  # every bar of the command (enhancing, scoring, analysing) asks it
    for name in ("transformers", "speechbrain", "huggingface_hub", "torchvision"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    # torch's notice about how transformers' WavLM passes its attention masks
    warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask and attn_mask.*")
    try:  # transformers' own "Loading weights" bars are not the command's progress
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    # a warning is one line for the user ("warning: ..."), not the library line that raised it
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"
    if quiet:  # third parties' warnings go; this package's own (input level, rate) stay
        os.environ["TQDM_DISABLE"] = "1"
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", category=DataWarning)


def default_system_name(enhanced: str) -> str:
    """A score row's name without --name: its folder's name ("system" where that would be
    empty or the Noisy row's reserved name)."""
    from .evaluation import NOISY

    name = os.path.basename(os.path.abspath(enhanced))
    return "system" if not name or name.strip().lower() == NOISY.lower() else name


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _interruptible(after: str):
    """Ctrl-C ends a command with one line (``after``: what it leaves behind) and the shell's
    130, not a traceback."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed, not a crash
                try:
                    stream.reconfigure(errors="backslashreplace")
                except (AttributeError, ValueError):
                    pass
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"\ninterrupted: {after}", file=sys.stderr)
                return 130
        return run
    return wrap


ENHANCE_EXAMPLES = """examples:
  sslse-enhance noisy.wav -o enhanced/ --source pretrained/sslse-log1p-dm
  sslse-enhance corpus/ -o corpus_enhanced/ --source my_model --batch-size 8
  sslse-enhance "recordings/**/*.flac" -o out/ --source owner/model --device cuda

Folders are searched recursively and mirrored below the output folder (a glob mirrors
below its fixed part); outputs are float WAV at the input's rate and channel count.
An output never replaces an input, two inputs never share an output, and a rerun into
the same folder replaces only the outputs an earlier run wrote there (none of your files)."""


@_interruptible("each output is written whole or not at all, so those there are complete; rerun to finish")
def enhance_main(argv: list[str] | None = None) -> int:
    ap = _parser("sslse-enhance", "Enhance audio files with an SSL enhancer.", ENHANCE_EXAMPLES)
    ap.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or globs")
    ap.add_argument("-o", "--output", required=True, help="output folder (created)")
    ap.add_argument("--source", required=True, help="exported model folder, hub id, or trained recipe folder")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--batch-size", type=positive_int, default=4, help="signals enhanced together (sorted by length)")
    ap.add_argument("--ssl-source", help="local folder for a hub SSL encoder (offline)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="autocast precision (bf16 pays on CPUs with AVX-512 BF16; benchmarks/precision.py)")
    args, code = _parse(ap, argv)
    if args is None:
        return code
    _quiet_third_parties(args.quiet)

    from .audio import AudioError
    from .errors import ConfigError
    from .inference import load_model
    from .output_plan import check_writable, plan_outputs

    try:  # every refusal before the model is loaded or anything is written
        jobs, skipped = plan_outputs(args.inputs, args.output)
        if not jobs:
            reasons = "; ".join(f"{p}: {r}" for p, r in skipped) or "no input"
            return _fail(f"nothing to enhance ({reasons})")
        model = load_model(args.source, ssl_source=args.ssl_source, device=args.device, precision=args.precision)
        check_writable(args.output)  # a read-only folder before the compute, not after it
    except (ConfigError, AudioError) as err:
        return _fail(str(err))
    earlier = {src: dst for src, dst in jobs if os.path.exists(dst)}  # outputs of an earlier run
    report = model.enhance_files(jobs, args.batch_size, record_in=args.output)  # bars follow -q (show_progress)
    existing = sum(src in earlier for src, _ in report.written)  # counted after: only what was replaced
    replaced = f" ({existing} earlier output(s) there replaced)" if existing else ""
    named = sum(1 for p, _ in skipped if not os.path.isdir(p) and not glob.has_magic(p))  # files, not folders or globs
    print(f"enhanced {len(report.written)} of {len(jobs) + named} file(s) -> {args.output}{replaced}")
    problems = skipped + report.failed
    if problems:
        print(f"{len(problems)} input(s) failed or skipped:", file=sys.stderr)
        for path, reason in problems:
            reason = reason[len(path) + 2:] if reason.startswith(f"{path}: ") else reason  # the path once
            stale = f" (the output {earlier[path]} there is from an earlier run, not this one)" if path in earlier else ""
            print(f"  {path}: {reason}{stale}", file=sys.stderr)
        return 1
    return 0


EVALUATE_EXAMPLES = """examples:
  sslse-evaluate enhance --model pretrained/sslse-log1p-dm --manifest clean_dir:noisy_dir --out eval/
  sslse-evaluate score --enhanced enhanced/ --clean clean_dir/ --noisy noisy_dir/ --name mine --out eval/

Estimates that are silent, NaN, missing after a failed enhancement or too short for a
metric get that metric's floor and are counted in the table's `floored` column."""


SCORE_EXAMPLES = """examples:
  sslse-evaluate score --enhanced enhanced/ --clean clean_dir/ --noisy noisy_dir/ --name mine --out eval/
  sslse-evaluate score --enhanced enhanced/ --clean clean_dir/ --dnsmos --out eval/   # + DNSMOS
  sslse-evaluate score --enhanced enhanced/ --noisy noisy_dir/ --name mine --out eval/  # DNSMOS only

With --clean: PESQ, CSIG, CBAK, COVL, STOI, SSNR, then SI-SDR (and DNSMOS with --dnsmos) in a
second table. Without it: DNSMOS only, for every audio file of --enhanced."""


@_interruptible("the tables in --out may be partial or from an earlier run; rerun to finish")
def evaluate_main(argv: list[str] | None = None) -> int:
    ap = _parser("sslse-evaluate", "Evaluate enhancers or score enhanced folders.", EVALUATE_EXAMPLES)
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    e = sub.add_parser("enhance", help="enhance a test manifest with a model, then score it and the noisy input",
                       formatter_class=_Formatter)
    e.add_argument("--model", required=True, help="exported model folder or trained recipe folder")
    e.add_argument("--manifest", required=True, help="test.json written by prepare_vctk.py, or CLEAN_DIR:NOISY_DIR")
    e.add_argument("--name", default=None, help="system name in the tables (default: folder name)")
    e.add_argument("--ssl-source", help="local folder for a hub SSL encoder (offline)")
    e.add_argument("--device", default="cpu")
    s = sub.add_parser("score", help="score a folder of enhanced files (against clean references by name, "
                       "or without them: DNSMOS only)", formatter_class=_Formatter, epilog=SCORE_EXAMPLES)
    s.add_argument("--enhanced", required=True)
    s.add_argument("--clean", help="clean references (PESQ, CSIG, CBAK, COVL, STOI, SSNR, SI-SDR); "
                   "without them only DNSMOS is scored")
    s.add_argument("--noisy", help="also score the noisy inputs (the Noisy row)")
    s.add_argument("--name", default=None, help="system name in the tables (default: the --enhanced folder's name)")
    s.add_argument("--dnsmos", action=argparse.BooleanOptionalAction, default=None,
                   help="add DNSMOS P.835 SIG/BAK/OVRL and P.808 (needs pip install -e \".[dnsmos]\"); "
                   "default: on without --clean, off with it")
    for p in (e, s):
        # after the sub-command too; SUPPRESS keeps a -q given before it from being reset
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or third-party notices")
        p.add_argument("--out", required=True, help="output folder for CSVs and summaries")
        p.add_argument("--workers", type=positive_int, default=2, help="scoring processes")
    args, code = _parse(ap, argv)
    if args is None:
        return code
    _quiet_third_parties(args.quiet)

    from . import evaluation
    from .audio import AudioError
    from .errors import ConfigError

    try:
        evaluation.check_results_folder(args.out)  # a file, or another tool's summary.json: before any work
        if args.command == "score":
            from .metrics import DnsmosUnavailable

            try:
                name = args.name or default_system_name(args.enhanced)
                summary = evaluation.score_folders(args.enhanced, args.clean, args.out, name, args.noisy,
                                                   args.workers, dnsmos=args.dnsmos)
            except DnsmosUnavailable as err:  # names the extra to install
                return _fail(str(err))
        else:
            from .inference import load_model, model_label

            name = args.name or model_label(args.model)
            evaluation.check_system_name(name)
            items = evaluation.read_manifest(args.manifest)
            model = load_model(args.model, ssl_source=args.ssl_source, device=args.device)
            meta = {"model": os.path.abspath(args.model) if os.path.exists(args.model) else args.model,
                    "manifest": args.manifest, "weights": model.mods.enhancer.weights_digest()}
            summary = evaluation.evaluate_model(model, items, args.out, name, args.workers, meta=meta)
    except (ValueError, OSError, ConfigError, AudioError) as err:  # one line, not a traceback
        return _fail(str(err))
    print(evaluation.markdown_table(summary["systems"]))
    print(f"-> {os.path.join(args.out, 'summary.json')}, summary.md, scores_*.csv")
    return 0


ANALYZE_EXAMPLES = """examples:
  sslse-analyze --source microsoft/wavlm-base-plus --manifest train.json --out analysis/
  sslse-analyze --source results/pf/999 --compare microsoft/wavlm-base-plus --manifest clean:noisy --out a/"""


@_interruptible("its output folder may be partial; rerun to finish")
def analyze_main(argv: list[str] | None = None) -> int:
    ap = _parser("sslse-analyze", "Clean-noisy distance per SSL layer vs the learned layer weights "
                 "(paper Sec. 3.3, Figs. 2-3): CSV, JSON and PNG.", ANALYZE_EXAMPLES)
    ap.add_argument("--source", required=True, help="hub id, local HF folder, exported model or trained recipe folder")
    ap.add_argument("--compare", help="a second source (e.g. the encoder before fine-tuning) for Fig. 3")
    ap.add_argument("--manifest", required=True,
                    help="JSON manifest of clean/noisy pairs (prepare_vctk.py), or CLEAN_DIR:NOISY_DIR")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", type=int, default=20, help="randomly sampled pairs (<= 0: all)")
    ap.add_argument("--drop-last", type=non_negative_int, default=0, help="drop the last k layers (paper: 2 for wav2vec 2.0)")
    ap.add_argument("--ssl-source", help="local folder for the hub SSL encoder a model folder names (offline)")
    ap.add_argument("--weights-from", help="recipe/exported folder or JSON with learned weights for --source")
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--batch-size", type=positive_int, default=4)
    ap.add_argument("--device", default="cpu")
    args, code = _parse(ap, argv)
    if args is None:
        return code
    _quiet_third_parties(args.quiet)

    import numpy as np

    from .analysis import analyze
    from .errors import ConfigError
    from .inference import check_device

    try:
        check_device(args.device)
        s = analyze(args.source, args.manifest, args.out, args.pairs, args.drop_last, args.seed, args.batch_size,
                    args.device, args.weights_from, args.compare, args.ssl_source)
    except (ValueError, OSError, ConfigError) as err:
        return _fail(str(err))
    for label, e in s["sources"].items():
        r = e["pearson_weights_vs_cn"]
        print(f"{label}: {len(e['layers'])} layers, CN mean {np.round(e['mean'], 3).tolist()}"
              + ("" if r is None else f", Pearson(weights, CN) = {r:.3f}"))
    print(f"-> {args.out}")
    return 0
