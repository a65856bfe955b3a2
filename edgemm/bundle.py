"""Bundle: a directory with ``manifest.json`` + artifacts + reports.

A bundle is data (see ``edgemm/trust.py``): the manifest is validated against its schema, and every
path it names (artifacts and their files, reports, parity samples, tokenizer vocabularies, a relative
evaluation path) must stay inside the bundle root after symlinks are resolved. Every artifact file
carries a sha256 checked on load.

Format 2 (this version) holds graphs: ``graphs: {name: {inputs, outputs, axes, parity}}`` and every
artifact names its graph; the top-level ``inputs`` / ``outputs`` / ``parity_samples`` mirror the default
graph (``main``, else the first) for readers of format 1. A format-1 bundle opens as one graph ``main``
(read-only compatible: open, verify, run, bench, compile). ``Bundle.graph(name)`` is a view with its own
spec, artifacts and parity samples; file names come from ``edgemm.layout``.

Written into a temporary sibling directory and swapped into place (fsynced; the path always holds
either the old or the new bundle), so a failed or interrupted export never leaves a half-written
bundle. An existing folder is replaced only if it is an edgemm bundle whose files its manifest lists.
"""
from __future__ import annotations

import dataclasses
import json
import errno
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .backends.registry import backend_names
from .errors import BundleError, EdgemmError, close_match_hint, one_line
from .files import sha256_file  # noqa: F401  (re-exported: edgemm.bundle.sha256_file)
from .version import __version__
from .iospec import IOSpec
from .safeio import read_json
from .layout import MAIN, check_graph_name

MODEL_FILE_SUFFIXES = (".onnx", ".xml")  # bare model files (edgemm.modelfile): exported or benched, never opened as bundles
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("format_version", "edgemm_version", "model", "inputs", "outputs", "artifacts", "calibration", "reports")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Artifact:
    """One runnable model file (plus companion files) inside a bundle."""

    path: str  # relative to the bundle root
    format: str  # onnx | openvino-ir | torch-export | tensorrt-plan
    precision: str  # fp32 | fp16 | int8
    backend: str  # the backend that runs it
    target: str  # the deployment target it was made for
    sha256: str = ""
    graph: str = "main"
    method: str = "fp32"  # fp32 | ptq | qat
    files: dict[str, str] = field(default_factory=dict)  # every file of the artifact -> sha256
    toolchain: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def size_bytes(self, root: Path) -> int:
        return sum((root / f).stat().st_size for f in (self.files or {self.path: ""}))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Artifact":
        where = f"artifact entry {d.get('path', '?')!r} in manifest.json" if isinstance(d, dict) else "an artifact entry in manifest.json"
        if not isinstance(d, dict):
            raise BundleError(f"{where} is a {type(d).__name__}, not an object; re-export the bundle")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(known)
        missing = [k for k in ("path", "format", "precision", "backend", "target") if k not in d]
        if unknown or missing:
            what = f"unknown key(s) {', '.join(sorted(map(str, unknown)))}" if unknown else f"no {', '.join(missing)}"
            raise BundleError(f"malformed {where} ({what}); re-export the bundle")
        for k in ("path", "format", "precision", "backend", "target", "sha256", "graph", "method"):
            if k in d and not isinstance(d[k], str):
                raise BundleError(f"malformed {where}: {k!r} must be a string, not {type(d[k]).__name__}; re-export the bundle")
        for k in ("files", "toolchain"):
            if k in d and not (isinstance(d[k], dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in d[k].items())):
                raise BundleError(f"malformed {where}: {k!r} must map strings to strings; re-export the bundle")
        if "extra" in d and not isinstance(d["extra"], dict):
            raise BundleError(f"malformed {where}: 'extra' must be an object; re-export the bundle")
        return cls(**d)


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(v), type(v).__name__)


def validate_manifest(manifest: Any, where: str) -> None:
    """The manifest's schema (DESIGN.md): the types edgemm relies on, one BundleError line otherwise."""

    def bad(key: str, want: str, value: Any) -> BundleError:
        return BundleError(f"{where} is malformed: {key!r} must be {want}, not {_type_name(value)}; re-export the bundle")

    if not isinstance(manifest, dict):
        raise BundleError(f"{where} is corrupt (not a JSON object); re-export the bundle")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{where} lacks key(s) {', '.join(missing)}; re-export the bundle")
    fv = manifest["format_version"]
    if not isinstance(fv, int) or isinstance(fv, bool):
        raise bad("format_version", "an integer", fv)
    if not isinstance(manifest["edgemm_version"], str):
        raise bad("edgemm_version", "a string", manifest["edgemm_version"])
    for key in ("model", "calibration", "reports"):
        if not isinstance(manifest[key], dict):
            raise bad(key, "an object", manifest[key])
    for key in ("parity_samples", "evaluation", "verify", "export"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(key, "an object", manifest[key])
    model = manifest["model"]
    for key in ("name", "source", "sha256", "factory", "checkpoint"):
        if model.get(key) is not None and not isinstance(model[key], str):
            raise bad(f"model.{key}", "a string", model[key])
    for key, rel in manifest["reports"].items():
        if not isinstance(rel, str):
            raise bad(f"reports.{key}", "a path string", rel)
    for key in ("inputs", "outputs", "artifacts"):
        if not isinstance(manifest[key], list):
            raise bad(key, "a list of objects", manifest[key])
        for i, entry in enumerate(manifest[key]):
            if not isinstance(entry, dict):
                raise bad(f"{key}[{i}]", "an object", entry)
    for key in ("inputs", "outputs"):
        for i, entry in enumerate(manifest[key]):
            if "shape" in entry and not isinstance(entry["shape"], list):
                raise bad(f"{key}[{i}].shape", "a list", entry["shape"])
            if entry.get("preprocessing") is not None and not isinstance(entry["preprocessing"], dict):
                raise bad(f"{key}[{i}].preprocessing", "an object or null", entry["preprocessing"])
            if entry.get("labels") is not None and not isinstance(entry["labels"], list):
                raise bad(f"{key}[{i}].labels", "a list or null", entry["labels"])
    ps = manifest.get("parity_samples", {})
    if "path" in ps and not isinstance(ps["path"], str):
        raise bad("parity_samples.path", "a path string", ps["path"])
    if fv >= 2 or "graphs" in manifest:
        graphs = manifest.get("graphs")
        if not isinstance(graphs, dict) or not graphs:
            raise bad("graphs", "an object naming at least one graph", graphs)
        for name, g in graphs.items():
            try:
                check_graph_name(name)
            except EdgemmError as exc:
                raise BundleError(f"{where} is malformed: {exc}; re-export the bundle") from exc
            if not isinstance(g, dict):
                raise bad(f"graphs.{name}", "an object", g)
            for key in ("inputs", "outputs"):
                if not isinstance(g.get(key), list) or not all(isinstance(e, dict) for e in g[key]):
                    raise bad(f"graphs.{name}.{key}", "a list of objects", g.get(key))
            for key in ("parity", "axes"):
                if key in g and not isinstance(g[key], dict):
                    raise bad(f"graphs.{name}.{key}", "an object", g[key])
            for key, rel in (g.get("parity") or {}).items():
                if key in ("path", "reference_outputs", "pruned_reference_outputs") and not isinstance(rel, str):
                    raise bad(f"graphs.{name}.parity.{key}", "a path string", rel)
        for i, a in enumerate(manifest["artifacts"]):
            if a.get("graph", MAIN) not in graphs:
                raise BundleError(f"{where} is malformed: artifacts[{i}] names graph {a.get('graph', MAIN)!r}, which 'graphs' "
                                  f"does not list ({', '.join(map(str, graphs))}); re-export the bundle")
    ev = manifest.get("evaluation", {})
    if ev.get("source") is not None and not isinstance(ev["source"], str):
        raise bad("evaluation.source", "a path string or null", ev["source"])


def confined(root: Path, rel: Any, what: str, *, real_root: Path | None = None) -> Path:
    """``root / rel`` if ``rel`` is a relative, normalised path that stays inside ``root`` after symlinks.

    Refuses absolute paths, ``..`` parts, and any symlink (of the file or a folder on its way) that
    leads outside the bundle: one BundleError line naming the path and the fix.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise BundleError(f"{what} in {root / MANIFEST} is {_type_name(rel)}, not a relative path; re-export the bundle")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~") or "\\" in rel or "\0" in rel or re.match(r"^[A-Za-z]:", rel):
        raise BundleError(f"{what} {rel!r} in {root / MANIFEST} is not a path relative to the bundle; "
                          "a bundle names only files inside it: re-export the bundle")
    if ".." in p.parts:
        raise BundleError(f"{what} {rel!r} in {root / MANIFEST} points outside the bundle ('..'); "
                          "a bundle names only files inside it: re-export the bundle")
    real_root = real_root or Path(root).resolve()
    full = Path(root) / p
    try:
        real = full.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise BundleError(f"{what} {rel!r} in bundle {root} cannot be resolved ({one_line(exc)}); re-export the bundle") from exc
    if real != real_root and real_root not in real.parents:
        raise BundleError(f"{what} {rel!r} in bundle {root} is a symlink (or lies under one) leading outside the bundle "
                          f"to {real}; a bundle holds its own files: replace the link with the file or re-export the bundle")
    return full


def not_a_bundle_line(path: str | os.PathLike) -> str:
    """What to say when a bare model file is opened as a bundle (``edgemm info``, ``edgemm.load``)."""
    p = Path(path)
    onnx = p.suffix.lower() == ".onnx"
    kind = "an ONNX model file" if onnx else "an OpenVINO IR model file"
    make = (f"make a bundle from it with `edgemm export {p} -o BUNDLE_DIR` (Python: edgemm.export({str(p)!r}, output=BUNDLE_DIR))"
            if onnx else "make a bundle from the model's ONNX with `edgemm export MODEL.onnx -o BUNDLE_DIR`")
    return f"{p} is {kind}, not a bundle: time it as it is with `edgemm bench {p}`, or {make}"


def graph_entries(manifest: dict) -> dict[str, dict]:
    """``{graph: {inputs, outputs, axes, parity}}`` of a validated manifest; a format-1 manifest is one graph ``main``."""
    if isinstance(manifest.get("graphs"), dict):
        return manifest["graphs"]
    entry = {"inputs": manifest.get("inputs", []), "outputs": manifest.get("outputs", []),
             "parity": manifest.get("parity_samples", {})}
    if "axes" in manifest:
        entry["axes"] = manifest["axes"]
    return {MAIN: entry}


def manifest_paths(manifest: dict) -> list[tuple[str, str]]:
    """Every (what, relative path) a validated manifest names inside the bundle."""
    out: list[tuple[str, str]] = []
    for a in manifest.get("artifacts", []):
        out.append(("artifact path", a.get("path")))
        out.extend(("artifact file", f) for f in (a.get("files") or {}))
    out.extend((f"report {k!r}", v) for k, v in manifest.get("reports", {}).items() if v)
    graphs = graph_entries(manifest)
    for g in [*graphs.values(), {"inputs": manifest.get("inputs", []), "parity": manifest.get("parity_samples", {})}]:
        ps = g.get("parity") or {}
        for key in ("path", "reference_outputs", "pruned_reference_outputs"):
            if key in ps:
                out.append((f"parity samples {key}", ps[key]))
        for t in g.get("inputs", []):
            pre = t.get("preprocessing") or {}
            for key in ("tokenizer", "vocab", "vocabulary"):
                if isinstance(pre, dict) and pre.get(key) is not None:
                    out.append((f"input {t.get('name')!r} {key}", pre[key]))
    src = manifest.get("evaluation", {}).get("source")
    if isinstance(src, str) and src and not Path(src).expanduser().is_absolute():
        out.append(("evaluation source", src))
    return out


class Bundle:
    """A bundle on disk. ``Bundle.open(path)`` validates the manifest, its paths and every artifact hash.

    ``spec`` / ``select()`` / ``parity`` answer for the default graph; ``graph(name)`` is the view of one graph."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        validate_manifest(manifest, str(self.root / MANIFEST))
        self.specs: dict[str, IOSpec] = {}
        for name, g in graph_entries(manifest).items():
            try:
                self.specs[name] = IOSpec.from_manifest(g)
            except EdgemmError as exc:
                where = "" if name == MAIN and "graphs" not in manifest else f"graph {name!r}: "
                raise BundleError(f"{self.root / MANIFEST}: {where}{exc}; re-export the bundle") from exc
        self.default_graph = MAIN if MAIN in self.specs else next(iter(self.specs))
        self.spec = self.specs[self.default_graph]
        self.artifacts = [Artifact.from_dict(a) for a in manifest["artifacts"]]
        real_root = self.root.resolve()
        for what, rel in manifest_paths(manifest):
            confined(self.root, rel, what, real_root=real_root)

    @classmethod
    def open(cls, path: str | os.PathLike, verify_hashes: bool = True) -> "Bundle":
        root = Path(path)
        mf = root / MANIFEST
        if root.is_file() and root.suffix.lower() in MODEL_FILE_SUFFIXES:
            raise BundleError(not_a_bundle_line(root))
        if root.is_file():
            raise BundleError(f"{root} is a file, not a bundle (a bundle is a folder with manifest.json); give the folder "
                              "`edgemm export` wrote")
        if not root.is_dir():
            raise BundleError(f"bundle {root} does not exist; create it with `edgemm export RECIPE -o {root}`")
        if not mf.is_file():
            raise BundleError(f"{root} has no manifest.json, so it is not an edgemm bundle; re-export it with `edgemm export`")
        confined(root, MANIFEST, "manifest")
        manifest = read_json(mf, "manifest", fix="re-export the bundle")  # bounded: size, depth, an object
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"{mf} lacks key(s) {', '.join(missing)}; re-export the bundle")
        if manifest["format_version"] not in READABLE_FORMATS:
            raise BundleError(
                f"{root} has bundle format {manifest['format_version']!r}, this edgemm {__version__} reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; re-export it with this version"
            )
        bundle = cls(root, manifest)
        if verify_hashes:
            bundle.verify_hashes()
        return bundle

    def file(self, rel: str, what: str = "path") -> Path:
        """``root / rel``, refused (one BundleError line) unless it stays inside the bundle after symlinks."""
        return confined(self.root, rel, what)

    def verify_hashes(self) -> None:
        for art in self.artifacts:
            for rel, digest in (art.files or {art.path: art.sha256}).items():
                f = self.file(rel, "artifact file")
                if not f.is_file():
                    raise BundleError(f"artifact file {rel} is missing from bundle {self.root}; re-export the bundle")
                if sha256_file(f) != digest:
                    raise BundleError(
                        f"artifact file {rel} in {self.root} does not match its sha256 in manifest.json "
                        "(modified or corrupt); re-export the bundle"
                    )

    @property
    def name(self) -> str:
        name = self.manifest["model"].get("name")
        return name if isinstance(name, str) and name else self.root.name

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    def graphs(self) -> list[str]:
        """Graph names in manifest order (a format-1 bundle: ``["main"]``)."""
        return list(self.specs)

    def check_graph(self, graph: str | None) -> str:
        """``graph`` if the bundle has it (None: the default graph), else one BundleError line with the names."""
        if graph is None:
            return self.default_graph
        if graph not in self.specs:
            names = self.graphs()
            raise BundleError(f"bundle {self.root} has no graph {graph!r}{close_match_hint(str(graph), names)}; graphs: {', '.join(names)}")
        return graph

    def graph(self, name: str | None = None) -> "GraphView":
        """The view of one graph: its own spec, artifacts and parity samples (None: the default graph)."""
        return GraphView(self, self.check_graph(name))

    @property
    def parity(self) -> dict:
        """The default graph's parity samples entry ({path, source, reference_outputs, ...})."""
        return dict(graph_entries(self.manifest)[self.default_graph].get("parity") or {})

    def select(self, backend: str | None = None, precision: str | None = None, graph: str | None = None) -> list[Artifact]:
        """Artifacts matching the filters (unknown names are errors with a close-match hint)."""
        known = tuple(dict.fromkeys([*backend_names(), *(a.backend for a in self.artifacts)]))
        for value, choices, what in ((backend, known, "backend"), (precision, PRECISIONS, "precision")):
            if value is not None and value not in choices:
                raise BundleError(f"unknown {what} {value!r}{close_match_hint(value, choices)}; use one of {', '.join(choices)}")
        if not self.artifacts:
            raise BundleError(f"bundle {self.root} has no artifacts; re-export it")
        graph = self.check_graph(graph)
        return [
            a for a in self.artifacts
            if a.graph == graph and (backend is None or a.backend == backend) and (precision is None or a.precision == precision)
        ]

    def artifact_id(self, art: Artifact) -> str:
        """The path, or ``path#backend`` when one file serves several backends (report keys)."""
        shared = sum(1 for a in self.artifacts if a.path == art.path) > 1
        return f"{art.path}#{art.backend}" if shared else art.path

    def report_path(self, key: str) -> Path | None:
        rel = self.manifest["reports"].get(key)
        return self.file(rel, f"report {key!r}") if rel else None

    def report(self, key: str) -> dict | None:
        p = self.report_path(key)
        if p is None or not p.is_file():
            return None
        return read_json(p, "report", fix=f"run `edgemm verify {self.root}` to rewrite it")

    def update(self, wait_s: float = 120.0) -> "BundleUpdate":
        """A change to this bundle committed as one (``with bundle.update() as u: ...``): see BundleUpdate."""
        return BundleUpdate(self.root, wait_s=wait_s)

    def write_reports(self, reports: dict[str, dict]) -> None:
        """Write ``reports/<key>.json`` for each key and record them in the manifest, as one update."""
        with self.update() as u:
            for key, data in reports.items():
                u.write_report(key, data)
        self._reload(u.bundle)

    def write_report(self, key: str, data: dict) -> Path:
        """Write ``reports/<key>.json`` atomically and record it in the manifest."""
        self.write_reports({key: data})
        return self.file(f"reports/{key}.json", f"report {key!r}")

    def _reload(self, fresh: "Bundle") -> None:
        self.manifest, self.artifacts = fresh.manifest, fresh.artifacts


class BundleUpdate:
    """One change to an existing bundle (``edgemm compile`` adding artifacts, ``edgemm verify`` writing reports),
    committed as one: under the bundle's lock (another writer is waited for, up to ``wait_s``, then refused in one
    line), the manifest is read afresh, files are moved in from a work folder beside the bundle, and the manifest
    is written once at the end. If anything fails before that (an error, disk full, Ctrl-C, SIGTERM), the files
    moved in are taken out again and any file they replaced is put back: the bundle lists every file it holds.
    The work folder (``self.work``: build files there) carries the staging marker, so an update killed with
    SIGKILL leaves nothing that the next writer's ``recover_interrupted`` does not remove."""

    def __init__(self, root: str | os.PathLike, wait_s: float = 120.0):
        self.root = Path(root)
        self.wait_s = wait_s
        self.bundle: Bundle | None = None
        self.work: Path | None = None
        self._moved: list[tuple[Path, Path | None]] = []  # (file moved in, the file it replaced, kept in work/old)
        self._lock = None
        self._term = None

    def __enter__(self) -> "BundleUpdate":
        from .log import logger

        real = self.root.resolve()
        self._lock = _OutputLock(real.parent / real.name, wait_s=self.wait_s,
                                 busy=f"another edgemm process is writing bundle {self.root} (an export, compile or verify) and did "
                                      f"not finish within {self.wait_s:g} s; run this again when it has finished")
        try:
            for line in recover_interrupted(real):
                logger.info("%s (left by an interrupted edgemm)", line)
            self.bundle = Bundle.open(self.root, verify_hashes=False)  # what the last writer committed
            self.work = make_work_folder(real, "update")
            self._term = sigterm_as_interrupt()
            self._term.__enter__()
        except BaseException:
            self._release()
            raise
        return self

    def install(self, source: Path, rel: str) -> Path:
        """Move ``source`` (a file in ``self.work``) into the bundle at ``rel``; a file already there is kept aside."""
        dest = confined(self.root, rel, "bundle path")
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if dest.exists():
            old = self.work / "old" / rel
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest, old)
        self._moved.append((dest, old))
        os.replace(source, dest)
        return dest

    def set_artifacts(self, artifacts: list[Artifact]) -> None:
        self.bundle.artifacts = list(artifacts)
        self.bundle.manifest["artifacts"] = [a.to_dict() for a in artifacts]

    def write_report(self, key: str, data: dict) -> None:
        rel = f"reports/{key}.json"
        staged = self.work / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(staged, data)
        self.install(staged, rel)
        self.bundle.manifest["reports"][key] = rel

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    Bundle(self.root, self.bundle.manifest)  # the schema and paths a reader will check
                    _atomic_write_json(self.root / MANIFEST, self.bundle.manifest)
                except BaseException:
                    self._undo()
                    raise
                self.bundle = Bundle(self.root, self.bundle.manifest)
            else:
                self._undo()
        finally:
            self._release()

    def _undo(self) -> None:
        for dest, old in reversed(self._moved):
            try:
                dest.unlink()
            except FileNotFoundError:
                pass
            if old is not None:
                os.replace(old, dest)
        self._moved = []

    def _release(self) -> None:
        try:
            if self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)
            if self._term is not None:
                self._term.__exit__(None, None, None)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


def make_work_folder(bundle_root: Path, kind: str) -> Path:
    """A hidden folder beside the bundle for files on their way in, marked as edgemm's: if the process dies,
    the next writer of that bundle removes it (``recover_interrupted``)."""
    real = Path(bundle_root).resolve()
    work = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-{os.getpid()}-", dir=real.parent))
    (work / STAGING_MARKER).write_text(json.dumps({"pid": os.getpid(), "output": str(real), "kind": kind}) + "\n")
    return work


@contextmanager
def _handling(signum: int, handler):
    """``handler`` for ``signum`` during the block, the previous one restored after (main thread only: elsewhere, or
    where signals cannot be set, the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.signal(signum, handler)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, old)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a service manager stopping edgemm) unwinds like Ctrl-C, so work folders are removed on the way out."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    with _handling(signal.SIGTERM, interrupt):
        yield


class GraphView:
    """One graph of a bundle, shaped like a single-graph bundle for its readers (verify, runtime, bench).

    ``spec``, ``artifacts``, ``select()`` and ``parity`` are the graph's own; ``manifest`` is the bundle's with
    the top-level ``inputs`` / ``outputs`` / ``parity_samples`` of this graph; files, reports and writes go to
    the bundle."""

    def __init__(self, bundle: Bundle, name: str):
        self.bundle = bundle
        self.graph_name = name
        self.root = bundle.root
        self.spec = bundle.specs[name]
        entry = graph_entries(bundle.manifest)[name]
        self.parity = dict(entry.get("parity") or {})
        self.manifest = {**bundle.manifest, "inputs": entry["inputs"], "outputs": entry["outputs"], "parity_samples": self.parity}
        self.artifacts = [a for a in bundle.artifacts if a.graph == name]
        self.default_graph = name
        self.specs = {name: self.spec}

    @property
    def name(self) -> str:
        return self.bundle.name

    def graphs(self) -> list[str]:
        return [self.graph_name]

    def graph(self, name: str | None = None) -> "GraphView":
        if name not in (None, self.graph_name):
            return self.bundle.graph(name)
        return self

    def select(self, backend: str | None = None, precision: str | None = None, graph: str | None = None) -> list[Artifact]:
        return self.bundle.select(backend, precision, graph or self.graph_name)

    def file(self, rel: str, what: str = "path") -> Path:
        return self.bundle.file(rel, what)

    def artifact_id(self, art: Artifact) -> str:
        return self.bundle.artifact_id(art)

    def report_path(self, key: str) -> Path | None:
        return self.bundle.report_path(key)

    def report(self, key: str) -> dict | None:
        return self.bundle.report(key)

    def verify_hashes(self) -> None:
        self.bundle.verify_hashes()

    def __repr__(self) -> str:
        return f"GraphView({self.root}, graph={self.graph_name!r})"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. a directory on a platform that cannot open one
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.EBADF):  # file systems that cannot fsync a directory
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (a rename is only as durable as what it renames)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                _fsync_path(p)
        _fsync_path(Path(dirpath), directory=True)


# An absolute host path inside a text (POSIX /a/b, ~/a, C:\\a): not after a word character, a dot, a colon or a slash
# (ratios like 3/4, URLs like http://h/p); it runs to the next blank, quote, bracket, comma or semicolon.
_HOST_PATH = re.compile(r"(?<![\w.:/~-])(?:~?/|[A-Za-z]:[\\/])[^\s'\"()\[\]{},;]*")
PACKAGE_REF = "edgemm:"  # a file of the installed edgemm package (a zoo checkpoint): "edgemm:zoo/checkpoints/avnet.pt"


def _base_name(match: re.Match) -> str:
    text = match.group(0).rstrip("/\\")
    return re.split(r"[\\/]", text)[-1] or match.group(0)


def without_host_paths(data: Any) -> Any:
    """``data`` (JSON) with every absolute host path inside its strings replaced by the file's name: a bundle
    travels, and the machine it was made on is nobody's business (the sha256 beside each source identifies it).
    Paths a bundle uses are relative to its root by contract; absolute ones are only ever provenance text."""
    if isinstance(data, str):
        return _HOST_PATH.sub(_base_name, data) if ("/" in data or "\\" in data) else data
    if isinstance(data, dict):
        return {k: without_host_paths(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [without_host_paths(v) for v in data]
    return data


def portable_file_ref(path: str | os.PathLike | None) -> str | None:
    """How a manifest names a file outside the bundle: ``edgemm:<path>`` for a file of the installed edgemm package
    (a zoo checkpoint: found again on any machine with edgemm), else its name (with the sha256 recorded beside it)."""
    if path is None:
        return None
    p = Path(path).expanduser().absolute()
    package = Path(__file__).resolve().parent
    try:
        return PACKAGE_REF + p.resolve().relative_to(package).as_posix()
    except ValueError:
        return p.name


def resolve_file_ref(ref: str | None) -> Path | None:
    """The file a manifest's ``portable_file_ref`` names on this machine, or None where it cannot be found here
    (a bare name; an absolute path of an older bundle that is not here)."""
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith(PACKAGE_REF):
        package = Path(__file__).resolve().parent
        rel = PurePosixPath(ref[len(PACKAGE_REF):])
        if rel.is_absolute() or ".." in rel.parts:
            return None
        p = package / rel
        return p if p.is_file() else None
    p = Path(ref).expanduser()
    return p if p.is_absolute() and p.is_file() else None


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + fsync + rename); non-finite floats become null, absolute
    host paths in texts the file's name (``without_host_paths``)."""
    from .jsonsafe import finite_or_none

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a bundle is shared like any file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(without_host_paths(finite_or_none(data)), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_path(path.parent, directory=True)


# --------------------------------------------------------------------------- replacing a folder


STAGING_MARKER = ".edgemm-staging"  # inside a staging folder until commit: "edgemm made this"
EDGEMM_WRITES = ("reports/", "data/parity_samples.npz")  # besides what the manifest lists


def _listed_files(manifest: dict) -> set[str]:
    listed = {MANIFEST}
    for what, rel in manifest_paths(manifest):
        if isinstance(rel, str):
            listed.add(str(PurePosixPath(rel)))
    return listed


def replace_refusal(folder: Path) -> str | None:
    """Why ``folder`` must not be replaced by an export, or None if it may be (absent, empty, or an edgemm
    bundle holding only files its manifest lists plus reports/data files edgemm writes)."""
    if not os.path.lexists(folder):
        return None
    if folder.is_symlink():
        return f"{folder} is a symlink; edgemm does not replace it: choose another -o directory"
    if not folder.is_dir():
        return f"{folder} exists and is a file, not a bundle; choose another -o directory or move the file"
    entries = list(folder.iterdir())
    if not entries:
        return None
    mf = folder / MANIFEST
    not_ours = f"{folder} exists and is not an edgemm bundle"
    if mf.is_symlink() or not mf.is_file():
        return f"{not_ours} (no manifest.json); choose another -o directory or remove it yourself"
    try:
        manifest = read_json(mf, "manifest")
        validate_manifest(manifest, str(mf))
    except (OSError, ValueError, BundleError):
        return f"{not_ours} (its manifest.json is not an edgemm manifest); choose another -o directory or remove it yourself"
    listed = _listed_files(manifest)
    strangers: list[str] = []
    for dirpath, dirs, files in os.walk(folder):
        base = Path(dirpath)
        for name in dirs + files:
            p = base / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                strangers.append(rel + " (symlink)")
            elif name in files and rel not in listed and not any(
                    rel == w or (w.endswith("/") and rel.startswith(w) and rel.endswith(".json")) for w in EDGEMM_WRITES):
                strangers.append(rel)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
    if strangers:
        shown = ", ".join(sorted(strangers)[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
        return (f"{folder} holds files its manifest does not list ({shown}); edgemm replaces only a bundle it wrote: "
                "move those files or choose another -o directory")
    return None


_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-[A-Za-z0-9_]+)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _ours(folder: Path) -> bool:
    """A leftover folder edgemm made: a staging folder (marker) or a complete bundle edgemm may replace."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    marker = folder / STAGING_MARKER
    if marker.is_file() and not marker.is_symlink():
        return True
    return (folder / MANIFEST).is_file() and replace_refusal(folder) is None


def recover_interrupted(output: Path) -> list[str]:
    """Clean up after an export that was killed: restore a hidden old bundle if the output is gone, remove
    the staging/old folders a dead edgemm process left beside ``output``. Folders that are not edgemm's,
    or belong to a live process, are left alone. Returns what it did (for the log)."""
    done: list[str] = []
    parent = output.parent
    if not parent.is_dir():
        return done
    stale = []
    for p in parent.iterdir():
        m = _STALE.match(p.name)
        if m and m["name"] == output.name and not _pid_alive(int(m["pid"])) and _ours(p):
            stale.append((m["kind"], p))
    for kind, p in sorted(stale, key=lambda kp: kp[0] != "old"):
        if kind == "old" and not os.path.lexists(output) and (p / MANIFEST).is_file():
            os.rename(p, output)  # the export died between hiding the old bundle and moving the new one in
            _fsync_path(parent, directory=True)
            done.append(f"restored {output} from {p.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


# --------------------------------------------------------------------------- locking and renaming


class _OutputLock:
    """One writer per bundle at a time (an export replacing it, a compile adding to it, a verify writing its
    reports), leaving no file behind: an abstract unix socket named after the bundle's real path (Linux),
    released by the kernel when the process dies; elsewhere an flock on the parent folder. ``wait_s``: how
    long to wait for another writer before refusing in one line (0: refuse at once)."""

    def __init__(self, output: Path, wait_s: float = 0.0, busy: str | None = None):
        import hashlib as _h
        import time

        self._sock = None
        self._fd = None
        key = _h.sha256(str(output).encode()).hexdigest()[:40]
        busy_error = BundleError(busy or f"another edgemm export is writing {output} right now; wait for it to finish or "
                                          "choose another -o directory")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._acquire(key, output)
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise busy_error from exc
                time.sleep(0.05)

    def _acquire(self, key: str, output: Path) -> None:
        if sys.platform.startswith("linux"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind(f"\0edgemm-export-{key}")
            except OSError:
                s.close()
                raise
            self._sock = s
        else:  # pragma: no cover - non-Linux
            import fcntl

            fd = os.open(output.parent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # old kernel or a file system without exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextmanager
def _sigint_deferred():
    """Hold Ctrl-C across a few renames that must not be split; re-raised right after."""
    hit: list[int] = []
    with _handling(signal.SIGINT, lambda s, f: hit.append(s)):
        yield
    if hit:
        raise KeyboardInterrupt


class BundleWriter:
    """Builds a bundle in a staging folder beside the output; ``commit()`` swaps it into place.

    Used as a context manager: if the block raises (or Ctrl-C), the staging folder is removed and an
    existing bundle at the destination is left untouched. An existing output is replaced only if it is
    an edgemm bundle whose files the manifest lists (``replace_refusal``); an interrupted earlier
    export's leftovers are recovered/cleaned first (``recover_interrupted``); two exports to one
    output cannot interleave.
    """

    def __init__(self, output: str | os.PathLike):
        from .log import logger
        from .trust import trust_root

        self.output = Path(output).absolute()
        if os.path.lexists(self.output.parent) and not self.output.parent.is_dir():
            raise BundleError(f"{self.output.parent} is a file, so {self.output} cannot be a bundle folder; choose another -o")
        refusal = replace_refusal(self.output)
        if refusal:
            raise BundleError(refusal)
        missing = [p for p in [self.output.parent, *self.output.parent.parents] if not p.exists()]
        self._created_parents = missing  # removed again if the export fails
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _OutputLock(self.output.parent.resolve() / self.output.name)
        self.tmp = None
        try:
            for line in recover_interrupted(self.output):
                logger.info("%s (left by an interrupted export)", line)
            refusal = replace_refusal(self.output)  # a restored old bundle is checked like any other
            if refusal:
                raise BundleError(refusal)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.tmp-{os.getpid()}-", dir=self.output.parent))
            os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the renamed bundle must be readable as usual
            (self.tmp / STAGING_MARKER).write_text(json.dumps({"pid": os.getpid(), "output": str(self.output)}) + "\n")
        except BaseException:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self._lock.release()
            raise
        trust_root(self.tmp)  # this process writes it: its own verification may load the program it saved
        self.artifacts: list[Artifact] = []
        self.manifest: dict[str, Any] = {}
        self._term = sigterm_as_interrupt()  # SIGTERM unwinds like Ctrl-C: the staging folder is removed
        self._term.__enter__()

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from .trust import untrust_root

        try:
            if self.tmp is not None and os.path.lexists(self.tmp):
                shutil.rmtree(self.tmp, ignore_errors=True)
            if self.tmp is not None:
                untrust_root(self.tmp)
            if exc_type is not None:
                for p in self._created_parents:  # deepest first
                    try:
                        p.rmdir()
                    except OSError:
                        break
        finally:
            self._term.__exit__(None, None, None)
            self._lock.release()

    def path(self, rel: str) -> Path:
        p = confined(self.tmp, rel, "bundle path")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_artifact(self, art: Artifact, files: list[str] | None = None) -> Artifact:
        rels = files or [art.path]
        art.files = {rel: sha256_file(self.path(rel)) for rel in rels}
        art.sha256 = art.files[art.path]
        self.artifacts.append(art)
        return art

    def write_json(self, rel: str, data: Any) -> None:
        _atomic_write_json(self.path(rel), data)

    def full_manifest(self, manifest: dict) -> dict:
        """``manifest`` with the format, version, artifact list and the default graph's top-level mirror."""
        out = {"format_version": FORMAT_VERSION, "edgemm_version": __version__, **manifest,
               "artifacts": [a.to_dict() for a in self.artifacts]}
        graphs = out.get("graphs") or {}
        if graphs:
            entry = graphs[MAIN if MAIN in graphs else next(iter(graphs))]
            out.setdefault("inputs", entry["inputs"])
            out.setdefault("outputs", entry["outputs"])
            out.setdefault("parity_samples", entry.get("parity", {}))
        return out

    def commit(self, manifest: dict) -> Bundle:
        manifest = self.full_manifest(manifest)
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"internal: manifest lacks {missing}")
        self.write_json(MANIFEST, manifest)
        Bundle(self.tmp, manifest)  # the schema and paths a reader will check, before anything is replaced
        refusal = replace_refusal(self.output)  # the folder may have changed while we exported
        if refusal:
            raise BundleError(refusal)
        (self.tmp / STAGING_MARKER).unlink()
        _fsync_tree(self.tmp)
        parent = self.output.parent
        with _sigint_deferred():
            if not os.path.lexists(self.output) or (self.output.is_dir() and not any(self.output.iterdir())):
                os.rename(self.tmp, self.output)  # onto nothing, or onto an empty folder
            elif _exchange(self.tmp, self.output):
                # the output now holds the new bundle, self.tmp the old one (removed below, or by the next export)
                pass
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.old-{os.getpid()}-", dir=parent))
                os.rmdir(old)  # a unique free name; rename() creates it
                os.rename(self.output, old)
                try:
                    os.rename(self.tmp, self.output)
                except BaseException:
                    os.rename(old, self.output)  # put the old bundle back where it was
                    raise
                os.rename(old, self.tmp)  # removed with the staging folder below
            _fsync_path(parent, directory=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _fsync_path(parent, directory=True)
        return Bundle.open(self.output)
