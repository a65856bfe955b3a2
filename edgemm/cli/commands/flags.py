"""Argument helpers shared by commands, and the CLI face of the options seam (``edgemm.options``).

``edgemm export`` and ``edgemm compile`` generate their option flags from the options classes (one argument
group per recipe section); ``--option SECTION.KEY=VALUE`` reaches any key of any section, plugin stages'
and plugin backends' included; ``--stage NAME`` adds a stage. The parser is also built for ``--help`` and
``--version``: nothing here reads the backend or stage registries (they load plugins' code); the built-in
backends' options classes are found in their own folders.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from functools import lru_cache
from typing import Any

from ...errors import ConfigError, close_match_hint
from ...options import Options, add_flags, check_value, flag_values, from_text, option_fields, section_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTION_DEST = "edgemm_assignments"
STAGE_DEST = "edgemm_stages"


def targets(value: str) -> list[str]:
    """``onnxruntime,openvino`` -> ["onnxruntime", "openvino"]."""
    return [t.strip() for t in value.split(",") if t.strip()]


def axis_range(value: str) -> tuple[str, tuple[int, int, int]]:
    """``batch=1:1:16`` -> ("batch", (1, 1, 16)); ``batch=8`` -> a fixed size."""
    name, sep, sizes = value.partition("=")
    parts = sizes.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if not sep or not name.strip() or len(nums) not in (1, 3) or min(nums, default=0) < 1:
        raise argparse.ArgumentTypeError(f"--axis {value!r}: write NAME=MIN:OPT:MAX with positive integers (e.g. batch=1:1:16) "
                                         "or NAME=N for a fixed size")
    return name.strip(), (tuple(nums) * 3 if len(nums) == 1 else tuple(nums))


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1 (``--threads``)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: expected an integer >= 1") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: expected an integer >= 1")
    return n


def stage_classes() -> tuple[type[Options], ...]:
    """The options classes of the built-in export stages, in the order their flags are listed."""
    from ...stages.options.export import ExportOptions
    from ...stages.options.prune import PruneOptions
    from ...stages.options.qat import QATOptions
    from ...stages.options.quantize import QuantizeOptions
    from ...stages.options.verify import VerifyOptions

    return (ExportOptions, QuantizeOptions, PruneOptions, QATOptions, VerifyOptions)


@lru_cache(maxsize=1)
def builtin_backend_options() -> dict[str, type[Options]]:
    """Backend name -> its options class, for the backend folders shipped with edgemm (no entry points)."""
    from ... import backends

    found: dict[str, type[Options]] = {}
    for info in pkgutil.iter_modules(backends.__path__):
        if not info.ispkg:
            continue
        backend = getattr(importlib.import_module(f"{backends.__name__}.{info.name}"), "BACKEND", None)
        cls = getattr(backend, "options", None)
        if isinstance(cls, type) and issubclass(cls, Options) and section_of(cls) == f"compile.{backend.name}":
            found[backend.name] = cls
    return found


def known_classes() -> dict[str, type[Options]]:
    """Section -> options class of every section the CLI knows without loading plugins."""
    out = {section_of(c): c for c in stage_classes()}
    out.update({section_of(c): c for c in builtin_backend_options().values()})
    return out


def add_section_flags(parser, classes, *, helps: dict[str, dict[str, str]] | None = None) -> None:
    """One argument group per options class, its flags generated from the class."""
    for cls in classes:
        section = section_of(cls)
        group = parser.add_argument_group(f"[{section}] options", f"the recipe's [{section}] table: a flag overrides the "
                                                                   "recipe's value")
        add_flags(group, cls, helps=(helps or {}).get(section))


def add_generic_flags(parser, *, stages: bool) -> None:
    """``--option SECTION.KEY=VALUE`` (repeatable) and, for export, ``--stage NAME`` (repeatable)."""
    parser.add_argument("--option", dest=OPTION_DEST, action="append", type=assignment, default=[], metavar="SECTION.KEY=VALUE",
                        help="set any option of any section, e.g. compile.openvino.num_streams=2 or stages.NAME.KEY=VALUE "
                             "(plugin stages and backends included); VALUE is read as a TOML value, else as text; repeatable")
    if stages:
        parser.add_argument("--stage", dest=STAGE_DEST, action="append", default=[], metavar="NAME",
                            help="also run this stage (a plugin's: see the edgemm.stages entry points and examples/stage_plugin); "
                                 "repeatable; the recipe's [stages] enable adds more")


def assignment(text: str) -> tuple[str, str, str]:
    """``compile.openvino.num_streams=2`` -> ("compile.openvino", "num_streams", "2") (an argparse type)."""
    lhs, sep, raw = text.partition("=")
    section, dot, key = lhs.strip().rpartition(".")
    if not sep or not dot or not section or not key:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: write SECTION.KEY=VALUE, e.g. quantize.max_drop=0.02 or "
                                         "compile.openvino.performance_hint=THROUGHPUT")
    return section, key, raw


def _assigned(section: str, key: str, raw: str) -> Any:
    """The value of ``--option SECTION.KEY=RAW``: converted and checked where the section is known here; a plugin's
    section is checked when the export or compile starts (that loads the plugin)."""
    classes = known_classes()
    cls = classes.get(section)
    label = f"--option {section}.{key}"
    if cls is None:
        if section.startswith(("compile.", "stages.")):
            return _toml_value(raw)
        raise ConfigError(f"{label}={raw} is not allowed: unknown section {section!r}{close_match_hint(section, classes)}; "
                          f"sections: {', '.join(sorted(classes))}, compile.<backend>, stages.<name>")
    fields = {f.name: f for f in option_fields(cls)}
    if key not in fields:
        raise ConfigError(f"{label}={raw} is not allowed: [{section}] has no key {key!r}{close_match_hint(key, fields)}; "
                          f"keys: {', '.join(fields)}")
    value = from_text(fields[key].annotation, raw)
    check_value(cls, key, value, label, raw)
    return value


def _toml_value(raw: str) -> Any:
    """``2`` -> 2, ``true`` -> True, ``[1, 2]`` -> [1, 2], ``"x"`` -> "x"; anything else is the text itself."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def section_values(args: argparse.Namespace, classes) -> dict[str, dict[str, Any]]:
    """Section -> {key: value} of what the user set: generated flags, then ``--option`` (later wins)."""
    out: dict[str, dict[str, Any]] = {}
    for cls in classes:
        given = flag_values(cls, args)
        if given:
            out[section_of(cls)] = given
    for section, key, raw in getattr(args, OPTION_DEST, []):
        out.setdefault(section, {})[key] = _assigned(section, key, raw)
    return out


def stage_names(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(dict.fromkeys(getattr(args, STAGE_DEST, [])))
