"""Optimization profiles: the (min, opt, max) shape of every input, from the IOSpec's axis ranges.

A TensorRT engine with dynamic inputs needs at least one optimization profile, each giving every dynamic
input a min/opt/max shape (IOptimizationProfile.set_shape); kernels are tuned for ``opt`` and valid for the whole
range. Several profiles split a wide range into narrower ones, each tuned for its own sizes (developer guide,
"Working with Dynamic Shapes" / "Optimization Profiles"); the runner picks, per call, the profile that covers the
feed's shapes (IExecutionContext.set_optimization_profile_async).

Everything here is plain data: ``{input name: (min shape, opt shape, max shape)}``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ...errors import SpecError

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]


def check_range(name: str, rng: Sequence[Sequence[int]]) -> ShapeRange:
    """``(min, opt, max)`` of one input as tuples of ints, or a SpecError naming what is wrong."""
    if not isinstance(rng, (tuple, list)) or len(rng) != 3:
        raise SpecError(f"input {name!r}: a profile range is (min shape, opt shape, max shape), not {rng!r}")
    lo, opt, hi = (tuple(int(d) for d in s) for s in rng)
    if not len(lo) == len(opt) == len(hi):
        raise SpecError(f"input {name!r}: min {list(lo)}, opt {list(opt)} and max {list(hi)} have different ranks")
    for i, (a, b, c) in enumerate(zip(lo, opt, hi)):
        if a < 1:
            raise SpecError(f"input {name!r}: axis {i} has min {a}; TensorRT profiles need sizes >= 1")
        if not a <= b <= c:
            raise SpecError(f"input {name!r}: axis {i} must satisfy min <= opt <= max, got {a}, {b}, {c}; fix the axis range")
    return lo, opt, hi


@dataclass(frozen=True)
class Profile:
    """One optimization profile: input name -> (min, opt, max) shape."""

    shapes: Mapping[str, ShapeRange]

    def covers(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        for name, (lo, _, hi) in self.shapes.items():
            s = tuple(shapes.get(name, ()))
            if len(s) != len(lo) or any(not a <= d <= c for a, d, c in zip(lo, s, hi)):
                return False
        return True

    def distance(self, shapes: Mapping[str, Sequence[int]]) -> int:
        """How far ``shapes`` are from this profile's opt shapes (the profile tuned closest wins)."""
        return sum(abs(d - o) for name, (_, opt, _) in self.shapes.items() for d, o in zip(shapes.get(name, ()), opt))

    def to_dict(self) -> dict:
        return {n: {"min": list(a), "opt": list(b), "max": list(c)} for n, (a, b, c) in self.shapes.items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Profile":
        return cls({n: check_range(n, (r["min"], r["opt"], r["max"])) for n, r in data.items()})


def split_axis(lo: int, opt: int, hi: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` contiguous sub-ranges of ``lo..hi``, geometrically spaced (batch sizes grow by factors, so 1..64 in 3
    becomes 1..4, 5..16, 17..64); each sub-range's opt is the declared opt clamped into it."""
    if lo == hi:
        return [(lo, opt, hi)] * count
    if count == 1:
        return [(lo, opt, hi)]
    if hi - lo + 1 < count:
        raise SpecError(f"cannot split the axis range {lo}..{hi} into {count} profiles (it has {hi - lo + 1} sizes); "
                        f"ask for at most {hi - lo + 1} profiles")
    edges = []
    prev = lo - 1
    for i in range(1, count):
        e = int(round(lo * math.pow(hi / lo, i / count)))
        e = max(e, prev + 1)  # non-empty
        e = min(e, hi - (count - i))  # room for the remaining sub-ranges
        edges.append(e)
        prev = e
    bounds = [lo] + [e + 1 for e in edges]
    tops = edges + [hi]
    return [(a, min(max(opt, a), b), b) for a, b in zip(bounds, tops)]


def derive_profiles(ranges: Mapping[str, Sequence[Sequence[int]]], count: int = 1) -> list[Profile]:
    """``count`` profiles from one ``{input: (min, opt, max)}`` range: each dynamic axis is split by :func:`split_axis`
    (axes with the same range split the same way, so inputs sharing a named axis stay consistent)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SpecError(f"the number of optimization profiles must be a positive integer, not {count!r}")
    checked = {n: check_range(n, r) for n, r in ranges.items()}
    if not checked:
        raise SpecError("no inputs to build an optimization profile for")
    dynamic = any(a != c for lo, _, hi in checked.values() for a, c in zip(lo, hi))
    if count > 1 and not dynamic:
        raise SpecError(f"{count} optimization profiles were asked for, but no input has a dynamic axis (every size is "
                        "fixed); use one profile, or give the axes a range")
    split = {n: [split_axis(a, b, c, count) for a, b, c in zip(*r)] for n, r in checked.items()}
    profiles = []
    for i in range(count):
        shapes = {n: (tuple(ax[i][0] for ax in axes), tuple(ax[i][1] for ax in axes), tuple(ax[i][2] for ax in axes))
                  for n, axes in split.items()}
        profiles.append(Profile(shapes))
    return profiles


def ranges_from_spec(spec, undeclared_max: int | None = None) -> dict[str, ShapeRange]:
    """``{input: (min, opt, max)}`` from an IOSpec's axis ranges (``IOSpec.shape_range``). A named axis the spec gives
    no range (``spec.axes`` lacks it) takes ``1..undeclared_max`` when that is set: TensorRT sizes an execution
    context's memory for the profile's max shapes, and the spec's default max (4096) would reserve it for 4096."""
    out = {}
    for name in spec.input_names:
        lo, opt, hi = spec.shape_range(name)
        if undeclared_max is not None:
            dims = spec.input(name).shape
            hi = tuple(min(h, max(undeclared_max, o)) if isinstance(d, str) and d not in spec.axes else h
                       for d, o, h in zip(dims, opt, hi))
        out[name] = check_range(name, (lo, opt, hi))
    return out


def profiles_for_spec(spec, count: int = 1, undeclared_max: int | None = None) -> list[Profile]:
    return derive_profiles(ranges_from_spec(spec, undeclared_max), count)


def select_profile(profiles: Sequence[Profile], shapes: Mapping[str, Sequence[int]]) -> int:
    """Index of the profile that covers ``shapes`` and is tuned closest to them; a SpecError when none covers them."""
    fits = [i for i, p in enumerate(profiles) if p.covers(shapes)]
    if not fits:
        have = "; ".join(", ".join(f"{n} {list(lo)}..{list(hi)}" for n, (lo, _, hi) in p.shapes.items()) for p in profiles)
        got = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        raise SpecError(f"feed shapes ({got}) are outside every optimization profile of this engine ({have}); "
                        "feed sizes inside the range, or rebuild with wider axis ranges")
    return min(fits, key=lambda i: (profiles[i].distance(shapes), i))


def dynamic_network_inputs(network_inputs: Mapping[str, Sequence[int]], profiles: Sequence[Profile]) -> list[str]:
    """Check the parsed network's inputs (``-1`` marks a dynamic axis) against the profiles; return the dynamic ones.

    Every network input needs a profile range of its rank whose fixed axes match the network's, and every dynamic
    input needs a range in each profile (IOptimizationProfile.set_shape)."""
    dynamic = []
    for name, dims in network_inputs.items():
        dims = tuple(int(d) for d in dims)
        for p in profiles:
            if name not in p.shapes:
                raise SpecError(f"the ONNX model has input {name!r}, which the bundle's IOSpec does not list; re-export the bundle")
            lo, _, hi = p.shapes[name]
            if len(lo) != len(dims):
                raise SpecError(f"input {name!r} has rank {len(dims)} in the ONNX model but {len(lo)} in the IOSpec; re-export the bundle")
            for i, d in enumerate(dims):
                if d >= 0 and not lo[i] == hi[i] == d:
                    raise SpecError(f"input {name!r} axis {i} is fixed at {d} in the ONNX model, but the IOSpec range is "
                                    f"{lo[i]}..{hi[i]}; give that axis the size {d}")
        if any(d < 0 for d in dims):
            dynamic.append(name)
    return dynamic
