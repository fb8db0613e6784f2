"""HyperPyYAML loading with a one-line inheritance rule: a file whose top-level key
``extends`` names another hparams file holds only overrides of that file.

This keeps one shared base per recipe and a handful of lines per paper row instead of
copies (HyperPyYAML's ``!include`` cannot stand at a file's root).
"""
from __future__ import annotations

import os
from typing import Any

import yaml
from .errors import ConfigError
from hyperpyyaml import load_hyperpyyaml, resolve_references


class _Placeholder:
    """``!PLACEHOLDER`` in a child file: a value the command line must supply."""


class _ChildLoader(yaml.SafeLoader):
    pass


_ChildLoader.add_constructor("!PLACEHOLDER", lambda loader, node: _Placeholder())


def _override_chain(path: str) -> tuple[str, dict[str, Any]]:
    """(root file, merged overrides) following ``extends`` links, nearest file winning."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.lstrip().startswith("extends:") and "\nextends:" not in text:
        return path, {}
    data = yaml.load(text, Loader=_ChildLoader) or {}
    parent = os.path.join(os.path.dirname(path), data.pop("extends"))
    root, inherited = _override_chain(parent)
    inherited.update(data)
    return root, inherited


def _merged(path: str, overrides: str | dict | None) -> tuple[str, dict[str, Any]]:
    root, merged = _override_chain(path)
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides) or {}
    merged.update(overrides or {})
    missing = sorted(k for k, v in merged.items() if isinstance(v, _Placeholder))
    if missing:
        raise ConfigError(f"{path}: give {', '.join(missing)} on the command line (--{missing[0]}=...)")
    return root, merged


def load_hparams(path: str, overrides: str | dict | None = None) -> dict[str, Any]:
    """Loads ``path`` (following ``extends``) with command-line ``overrides`` applied last.

    Unknown keys are errors (HyperPyYAML ``overrides_must_match``), so a typo fails early.
    """
    root, merged = _merged(path, overrides)
    with open(root, encoding="utf-8") as f:
        try:
            return load_hyperpyyaml(f, merged, overrides_must_match=True)
        except (KeyError, ValueError) as err:
            message = str(err).strip('"')
            if "Override" in message or "overrides" in message:  # a key that is not in the file
                raise ConfigError(f"{path}: {message[:160]}...") from None
            raise


def resolved_yaml(path: str, overrides: str | dict | None = None) -> str:
    """The self-contained YAML text that ``load_hparams`` would build (saved with every
    experiment so that evaluation and export need no other file)."""
    root, merged = _merged(path, overrides)
    with open(root, encoding="utf-8") as f:
        return resolve_references(f, merged, overrides_must_match=True).getvalue()
