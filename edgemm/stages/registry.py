"""Find stages: the built-in units (edgemm/stages/units.py) plus the ``edgemm.stages`` entry points.

The pipeline is the built-in order with every wanted plugin stage placed after the stage it names
(``Stage.after``). A plugin that fails to load is listed as broken with its reason; it breaks only
an export that asks for it.
"""
from __future__ import annotations

from functools import lru_cache

from ..errors import EdgemmError, close_match_hint
from .base import Stage


def _discover() -> tuple[dict[str, Stage], dict[str, str]]:
    from ..plugins import plugins_enabled

    return _load(plugins_enabled())  # cached per setting: a call while plugins are deferred (--help) caches no empty set


@lru_cache(maxsize=2)
def _load(with_plugins: bool) -> tuple[dict[str, Stage], dict[str, str]]:
    from ..plugins import instantiate, load_entry_points
    from .units import BUILTIN

    found: dict[str, Stage] = {s.name: s for s in BUILTIN}
    if not with_plugins:
        return found, {}
    loaded, broken_info = load_entry_points("edgemm.stages", _check_stage, make=instantiate)
    broken = {n: b.reason for n, b in broken_info.items()}
    for name, stage in loaded.items():
        if stage.name in found:
            broken[name] = f"its stage name {stage.name!r} is taken by another stage"
            continue
        found[stage.name] = stage
    return found, broken


def _check_stage(stage) -> str | None:
    """Why an entry point's object is not a usable stage (None: it is)."""
    if not isinstance(stage, Stage):
        return f"it is a {type(stage).__name__}, not an edgemm Stage (subclass edgemm.stages.base.Stage)"
    if not isinstance(stage.name, str) or not stage.name:
        return "its stage has no name"
    if not isinstance(stage.after, str):
        return "its 'after' is not a stage name"
    return None


def all_stages() -> dict[str, Stage]:
    return dict(_discover()[0])


def broken_stages() -> dict[str, str]:
    """Stage plugins that failed to load -> why."""
    return dict(_discover()[1])


def get_stage(name: str) -> Stage:
    stages, broken = _discover()
    if name in stages:
        return stages[name]
    if name in broken:
        raise EdgemmError(f"stage {name!r} comes from a plugin that fails to load ({broken[name]}); fix or reinstall that package")
    raise EdgemmError(f"unknown stage {name!r}{close_match_hint(name, stages)}; stages: {', '.join(stages)} "
                      "(more come from packages registering an 'edgemm.stages' entry point)")


def plan(requested: tuple[str, ...] = ()) -> list[Stage]:
    """The built-in stages in order, with each requested plugin stage after the stage it follows."""
    from .units import BUILTIN

    order = list(BUILTIN)
    for name in dict.fromkeys(requested):
        stage = get_stage(name)
        if stage in order:
            continue
        names = [s.name for s in order]
        if stage.after not in names:
            raise EdgemmError(f"stage {name!r} runs after {stage.after!r}, which is not a stage; stages: {', '.join(names)}")
        # after the named stage and the plugin stages already placed behind it
        i = names.index(stage.after) + 1
        while i < len(order) and order[i] not in BUILTIN:
            i += 1
        order.insert(i, stage)
    return order
