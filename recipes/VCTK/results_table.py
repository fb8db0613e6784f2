#!/usr/bin/env python3
"""Render the README's results section from evaluation summaries (never typed by hand).

Collects the side-by-side comparison with other enhancers (``docs/peers/peers.md``, written by
``benchmarks/peers.py``) and ``pretrained/<model>/eval/<test set>/summary.json`` (written by
``sslse-evaluate``) and, with ``--write``, replaces the block between the markers in README.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from speechbrain_sslse.evaluation import markdown_table
from speechbrain_sslse.output_plan import write_text_atomic

START = "<!-- results:start -->"
END = "<!-- results:end -->"
EMPTY = "No evaluation summaries yet."


def render_peers(root: str) -> str:
    """docs/peers/peers.md below a heading of the README's level (its own headings demoted)."""
    path = os.path.join(root, "docs", "peers", "peers.md")
    if not os.path.exists(path):
        return ""
    lines = open(path, encoding="utf-8").read().strip().splitlines()
    body = [("##" + line) if line.startswith("## ") else line for line in lines[1:]]  # drop its title
    return "### Side by side with other enhancers (source: `docs/peers/peers.md`)\n" + "\n".join(body).rstrip()


def render(root: str) -> str:
    paths = sorted(glob.glob(os.path.join(root, "pretrained", "*", "eval", "*", "summary.json")))
    if not paths:
        return EMPTY
    peers = render_peers(root)
    parts = [peers, "### Each shipped model on its test sets"] if peers else []
    for path in paths:
        rel = os.path.relpath(path, root)
        model, test_set = rel.split(os.sep)[1], rel.split(os.sep)[3]
        summary = json.load(open(path))
        n = next(iter(summary["systems"].values()))["n"]
        parts.append(f"**{model}** on `{test_set}` ({n} utterances; source: `{rel}`)\n\n{markdown_table(summary['systems'])}")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    args = ap.parse_args(argv)
    text = render(args.root)
    if not args.write:
        print(text)
        return 0
    if text == EMPTY:  # (a wrong --root, say) the README's results would be replaced by nothing
        print(f"error: no pretrained/*/eval/*/summary.json below {os.path.abspath(args.root)}; README.md "
              "not changed", file=sys.stderr)
        return 2
    readme_path = os.path.join(args.root, "README.md")
    try:
        readme = open(readme_path, encoding="utf-8").read()
    except OSError as err:
        print(f"error: {readme_path}: {err.strerror}", file=sys.stderr)
        return 2
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        print(f"error: {readme_path} needs one {START} line and, after it, one {END} line around the results",
              file=sys.stderr)
        return 2
    head, rest = readme.split(START)
    tail = rest.split(END)[1]
    write_text_atomic(readme_path, f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
