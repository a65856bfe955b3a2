"""Bundle: a directory with ``manifest.json`` + artifacts + reports.

Written into a temporary sibling directory and renamed into place, so a failed export never
leaves a half-written bundle. Every artifact file carries a sha256 checked on load.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.registry import backend_names
from .version import __version__
from .errors import BundleError, close_match_hint
from .iospec import IOSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("format_version", "edgemm_version", "model", "inputs", "outputs", "artifacts", "calibration", "reports")
PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown or not {"path", "format", "precision", "backend", "target"} <= set(d):
            raise BundleError(f"malformed artifact entry {d.get('path', '?')!r} in manifest.json; re-export the bundle")
        return cls(**d)


class Bundle:
    """A bundle on disk. ``Bundle.open(path)`` validates the manifest and every artifact hash."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self.spec = IOSpec.from_manifest(manifest)
        self.artifacts = [Artifact.from_dict(a) for a in manifest["artifacts"]]

    @classmethod
    def open(cls, path: str | os.PathLike, verify_hashes: bool = True) -> "Bundle":
        root = Path(path)
        mf = root / MANIFEST
        if not root.is_dir():
            raise BundleError(f"bundle {root} does not exist; create it with `edgemm export RECIPE -o {root}`")
        if not mf.is_file():
            raise BundleError(f"{root} has no manifest.json, so it is not an edgemm bundle; re-export it with `edgemm export`")
        try:
            manifest = json.loads(mf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{mf} is corrupt ({exc}); re-export the bundle") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{mf} is corrupt (not a JSON object); re-export the bundle")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"{mf} lacks key(s) {', '.join(missing)}; re-export the bundle")
        if manifest["format_version"] != FORMAT_VERSION:
            raise BundleError(
                f"{root} has bundle format {manifest['format_version']}, this edgemm {__version__} reads format "
                f"{FORMAT_VERSION}; re-export it with this version"
            )
        bundle = cls(root, manifest)
        if verify_hashes:
            bundle.verify_hashes()
        return bundle

    def verify_hashes(self) -> None:
        for art in self.artifacts:
            for rel, digest in (art.files or {art.path: art.sha256}).items():
                f = self.root / rel
                if not f.is_file():
                    raise BundleError(f"artifact file {rel} is missing from bundle {self.root}; re-export the bundle")
                if sha256_file(f) != digest:
                    raise BundleError(
                        f"artifact file {rel} in {self.root} does not match its sha256 in manifest.json "
                        "(modified or corrupt); re-export the bundle"
                    )

    @property
    def name(self) -> str:
        return self.manifest["model"].get("name", self.root.name)

    def graphs(self) -> list[str]:
        return sorted({a.graph for a in self.artifacts})

    def select(self, backend: str | None = None, precision: str | None = None, graph: str | None = None) -> list[Artifact]:
        """Artifacts matching the filters (unknown names are errors with a close-match hint)."""
        known = tuple(dict.fromkeys([*backend_names(), *(a.backend for a in self.artifacts)]))
        for value, choices, what in ((backend, known, "backend"), (precision, PRECISIONS, "precision")):
            if value is not None and value not in choices:
                raise BundleError(f"unknown {what} {value!r}{close_match_hint(value, choices)}; use one of {', '.join(choices)}")
        graphs = self.graphs()
        if graph is not None and graph not in graphs:
            raise BundleError(f"bundle {self.root} has no graph {graph!r}{close_match_hint(graph, graphs)}; graphs: {', '.join(graphs)}")
        graph = graph or ("main" if "main" in graphs else graphs[0])
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
        return self.root / rel if rel else None

    def report(self, key: str) -> dict | None:
        p = self.report_path(key)
        if p is None or not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            raise BundleError(f"report {p} is corrupt; run `edgemm verify {self.root}` to rewrite it") from None

    def replace_artifacts(self, artifacts: list[Artifact]) -> None:
        """Rewrite the manifest's artifact list (the manifest is replaced atomically)."""
        self.artifacts = list(artifacts)
        self.manifest["artifacts"] = [a.to_dict() for a in self.artifacts]
        _atomic_write_json(self.root / MANIFEST, self.manifest)

    def write_report(self, key: str, data: dict) -> Path:
        """Write ``reports/<key>.json`` atomically and record it in the manifest."""
        rel = f"reports/{key}.json"
        _atomic_write_json(self.root / rel, data)
        if self.manifest["reports"].get(key) != rel:
            self.manifest["reports"][key] = rel
            _atomic_write_json(self.root / MANIFEST, self.manifest)
        return self.root / rel


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a bundle is shared like any file
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


class BundleWriter:
    """Builds a bundle in a temporary sibling directory; ``commit()`` renames it into place.

    Used as a context manager: if the block raises, the temporary directory is removed and an
    existing bundle at the destination is left untouched.
    """

    def __init__(self, output: str | os.PathLike):
        self.output = Path(output).absolute()
        if self.output.exists() and not (self.output / MANIFEST).is_file():
            if not self.output.is_dir() or any(self.output.iterdir()):
                raise BundleError(
                    f"{self.output} exists and is not an edgemm bundle; choose another -o directory or remove it"
                )
        missing = [p for p in [self.output.parent, *self.output.parent.parents] if not p.exists()]
        self._created_parents = missing  # removed again if the export fails
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.tmp-", dir=self.output.parent))
        os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the renamed bundle must be readable as usual
        self.artifacts: list[Artifact] = []
        self.manifest: dict[str, Any] = {}

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is not None:
            for p in self._created_parents:  # deepest first
                try:
                    p.rmdir()
                except OSError:
                    break

    def path(self, rel: str) -> Path:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_artifact(self, art: Artifact, files: list[str] | None = None) -> Artifact:
        rels = files or [art.path]
        art.files = {rel: sha256_file(self.tmp / rel) for rel in rels}
        art.sha256 = art.files[art.path]
        self.artifacts.append(art)
        return art

    def write_json(self, rel: str, data: Any) -> None:
        _atomic_write_json(self.path(rel), data)

    def commit(self, manifest: dict) -> Bundle:
        manifest = {
            "format_version": FORMAT_VERSION,
            "edgemm_version": __version__,
            **manifest,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"internal: manifest lacks {missing}")
        self.write_json(MANIFEST, manifest)
        old = None
        if self.output.exists():
            old = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
            os.rename(self.output, old)
        os.rename(self.tmp, self.output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return Bundle.open(self.output)
