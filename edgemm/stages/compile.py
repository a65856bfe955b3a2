"""The compile stage: an ONNX artifact -> a target backend's own artifact (OpenVINO IR, ONNX Runtime's
offline-optimized model, later TensorRT engines), at export time and on an existing bundle.

At export (``compile_targets``) every target backend gets its fp32 artifacts: the ones it compiles
from the fp32 ONNX (``Backend.export_precisions``), else the fp32 ONNX itself listed under its
name (a backend that runs ONNX, or builds its engine from it on the target device).
``compile_bundle`` is ``edgemm compile``: it adds the compiled artifact to an existing bundle
(written beside it, then the manifest replaced atomically) and verifies only what it added
(``verify_added``: the other artifacts' report rows stay as they were).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import layout
from ..backends.base import Backend, Compiled, version_of
from ..backends.registry import get_backend, target_names
from ..bundle import Artifact, Bundle, BundleUpdate, make_work_folder, sha256_file, sigterm_as_interrupt
from ..errors import BundleError, EdgemmError, close_match_hint
from ..log import logger, step
from .export_errors import target_rejects


def compile_targets(ctx, targets, fp16: bool, onnx_backend: str) -> None:
    """fp32 artifacts of every target from the graph's fp32 ONNX (already listed under ``onnx_backend``)."""
    onnx_art = ctx.fp32_onnx()
    for target in targets:
        backend = get_backend(target)
        if target == onnx_backend:
            continue
        precisions = [p for p in backend.export_precisions if p == "fp32" or (fp16 and p == "fp16")]
        if not precisions:  # runs the ONNX itself, or builds its engine from it on the target device
            ctx.add_artifact(Artifact(onnx_art.path, "onnx", "fp32", target, target, toolchain=dict(onnx_art.toolchain)))
            continue
        folder = ctx.folder(backend.folder)
        options = ctx.options(f"compile.{backend.name}")
        for precision in precisions:
            with step(f"compiling for {target} ({precision})"):
                try:
                    if backend.converts_module:  # converts the deployed torch model itself (litert), not the ONNX file
                        made = backend.compile_module(ctx.graph.deployed_module, ctx.graph.args,
                                                      ctx.path(folder + "/x").parent, ctx.graph.spec, precision,
                                                      options=options)
                    else:
                        made = backend.compile(ctx.path(onnx_art.path), ctx.path(folder + "/x").parent, ctx.graph.spec,
                                               precision, options=options)
                except Exception as exc:  # an op the target cannot take: named with the torch op and module it came from
                    line = target_rejects(exc, target, f"graph {ctx.graph.name}", ctx.graph.program)
                    if line is None:
                        raise
                    raise EdgemmError(line) from exc
            for c in made:
                ctx.add_artifact(Artifact(f"{folder}/{c.main}", c.format, precision, backend.name, target, toolchain=c.toolchain,
                                          extra=dict(c.extra)), files=[f"{folder}/{f}" for f in c.files])


def _source_for(bundle: Bundle, backend: Backend, precision: str, graph: str | None) -> Artifact:
    """The ONNX artifact ``backend`` compiles from: the fp32 ONNX, or the int8 Q/DQ model made for this target."""
    onnx = [a for a in bundle.select(graph=graph) if a.format == "onnx"]
    if precision != "int8":
        fp32 = [a for a in onnx if a.precision == "fp32"]
        if not fp32:
            raise BundleError(f"bundle {bundle.root} has no fp32 ONNX artifact to compile from; re-export it")
        return fp32[0]
    int8 = [a for a in onnx if a.precision == "int8" and a.target == backend.name and a.extra.get("compiled_from") is None]
    if not int8:
        raise EdgemmError(f"bundle {bundle.root} has no int8 model for {backend.name}; run `edgemm export ... --int8 "
                          f"--target {backend.name}` first, then compile")
    return int8[0]


def compile_bundle(bundle_dir: str | os.PathLike, target: str, *, precision: str = "fp32", graph: str | None = None,
                   verify: bool = True, threads: int | None = None, options=None) -> Bundle:
    """``edgemm compile``: add ``target``'s compiled artifact of ``precision`` to an existing bundle (every graph, or
    ``graph``), then verify it. ``options``: the backend's options object or a dict (``Backend.options``)."""
    if target not in target_names():
        raise EdgemmError(f"unknown target {target!r}{close_match_hint(target, target_names())}; use one of {', '.join(target_names())}")
    backend = get_backend(target)
    backend.require()  # one line naming the library and how to get it
    bundle = Bundle.open(bundle_dir)
    if precision not in backend.precisions:
        raise EdgemmError(f"{target} has no {precision} precision; use one of {', '.join(backend.precisions)}")
    if options is not None and backend.options is not None:
        from ..options import build_options

        options = build_options(backend.options, options, f"compile.{target}")
    graphs = [bundle.check_graph(graph)] if graph is not None else bundle.graphs()
    staging = make_work_folder(bundle.root, "compile")  # the compiler writes here, outside the lock (it may take minutes)
    try:
        with sigterm_as_interrupt():
            made = []
            for g in graphs:
                source = _source_for(bundle, backend, precision, g)
                out = staging / g
                out.mkdir()
                with step(f"compiling {source.path} for {target} ({precision})"):
                    made.append((source, out, backend.compile(bundle.root / source.path, out, bundle.specs[g], precision,
                                                              source_precision=source.precision, options=options)))
            with bundle.update() as u:  # one commit under the bundle's lock, on the manifest as it is now
                added = [a for source, out, compiled in made for a in _install(u, backend, compiled, out, precision, target, source)]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("added %s", ", ".join(a.path for a in added))
    if verify and added:
        # only what this compile added is checked and timed: the other artifacts have not changed, their rows still hold
        from .verify_added import verify_added

        verify_added(bundle.root, [(a.path, a.backend) for a in added], threads=threads)
        bundle = Bundle.open(bundle.root)  # with the reports verify wrote
    return bundle


def _install(u: BundleUpdate, backend: Backend, made: list[Compiled], staging: Path, precision: str, target: str,
             source: Artifact) -> list[Artifact]:
    """Move compiled files into the bundle and list them; an artifact of the same path is replaced (it is ours)."""
    added = []
    folder = layout.folder(source.graph, backend.folder)
    for c in made:
        rels = [f"{folder}/{f}" for f in c.files]
        files = {rel: sha256_file(staging / f) for rel, f in zip(rels, c.files)}
        for rel, f in zip(rels, c.files):
            u.install(staging / f, rel)
        art = Artifact(rels[0] if c.main == c.files[0] else f"{folder}/{c.main}", c.format, precision, backend.name,
                       target, method=source.method, graph=source.graph, files=files,
                       toolchain={**c.toolchain, "edgemm-compile": version_of("edgemm") or "?"},
                       extra={**c.extra, "source": source.path})
        art.sha256 = art.files[art.path]
        added.append(art)
    paths = {a.path for a in added}
    u.set_artifacts([a for a in u.bundle.artifacts if not (a.path in paths and a.backend == backend.name)] + added)
    return added
