"""Where every file of a bundle lives: one function of (graph, folder, precision, method).

The graph named ``main`` keeps the layout of format-1 bundles (``onnx/model.fp32.onnx``,
``openvino/model.int8.xml``, ``reference/model.pt2``, ``data/parity_samples.npz``); every other graph
has the same tree under ``graphs/<name>/``. A backend names the files it makes inside its folder
(``Backend.compile`` returns them relative to the folder it is given); everything else a bundle holds
is named here, so no stage or command spells a path of its own.
"""
from __future__ import annotations

import re

from .errors import EdgemmError

MAIN = "main"
_GRAPH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_graph_name(name: object) -> str:
    """A graph name is a short file-system-safe word: it becomes a folder of the bundle."""
    if not isinstance(name, str) or not _GRAPH_NAME.match(name) or name in (".", ".."):
        raise EdgemmError(f"graph name {name!r} is not allowed; use letters, digits, '_', '-' or '.' (at most 64), "
                          "starting with a letter or digit")
    return name


def graph_root(graph: str = MAIN) -> str:
    """The folder (with a trailing slash) a graph's files live under; '' for ``main``."""
    return "" if graph == MAIN else f"graphs/{check_graph_name(graph)}/"


def folder(graph: str, name: str) -> str:
    """A folder of a graph: a backend's artifact folder, ``onnx``, ``reference`` or ``data``."""
    return f"{graph_root(graph)}{name}"


def stem(precision: str, method: str = "fp32") -> str:
    """``model.fp32`` / ``model.int8`` (post-training) / ``model.int8.qat`` (quantization-aware training)."""
    return f"model.{precision}" + ("" if method in ("fp32", "ptq", precision) else f".{method}")


def artifact_path(graph: str, folder_name: str, precision: str, method: str = "fp32", suffix: str = ".onnx") -> str:
    """The main file of an artifact edgemm writes itself (a backend's compile output keeps its own file names)."""
    return f"{folder(graph, folder_name)}/{stem(precision, method)}{suffix}"


def onnx_path(graph: str = MAIN) -> str:
    return artifact_path(graph, "onnx", "fp32")


def reference_path(graph: str = MAIN) -> str:
    return f"{folder(graph, 'reference')}/model.pt2"


def parity_samples_path(graph: str = MAIN) -> str:
    return f"{folder(graph, 'data')}/parity_samples.npz"


def parity_reference_path(graph: str = MAIN, pruned: bool = False) -> str:
    return f"{folder(graph, 'data')}/parity_reference{'.pruned' if pruned else ''}.npz"


def report_path(key: str) -> str:
    """Reports are one file per kind for the whole bundle (rows name their artifact, and so their graph)."""
    return f"reports/{key}.json"


def asset_path(graph: str, name: str) -> str:
    """A file a graph's pre-processing reads (a tokenizer): ``assets/<name>`` (``graphs/<g>/assets/<name>``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or base in (".", ".."):
        raise EdgemmError(f"asset name {name!r} is not a file name")
    return f"{folder(graph, 'assets')}/{base}"
