"""``edgemm matrix --ray`` on a loopback Ray cluster started with ``ray start`` (a head and nodes with a custom
device-kind resource): each cell's measurement runs on a node of its device kind, cells of a kind no live node
offers are lost (exit 2), and once such a node joins, a rerun runs only those cells. Slow (three Ray nodes);
skipped without Ray (pip install 'edgemm[ray]'). Each node is a ``ray start --block`` process of this test,
stopped by its pid (its node's processes go with it)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray matrix needs Ray: pip install 'edgemm[ray]'")
pytestmark = pytest.mark.slow

from matrix_tiny import write_plan  # noqa: E402
from models.paths import ROOT  # noqa: E402

RAY = Path(sys.executable).with_name("ray")


def _env() -> dict:
    tests = ROOT / "tests"
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tests), str(tests / "matrix"), os.environ.get("PYTHONPATH", "")])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> None:
        log = open(Path(self.tmp) / f"node{len(self.procs)}.log", "w")
        self.procs.append(subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
                                            "--node-ip-address", "127.0.0.1", *args], env=_env(), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def wait_for(self, resource: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run([str(RAY), "status", "--address", self.address], env=_env(), capture_output=True, text=True)
            if out.returncode == 0 and resource in out.stdout:
                return
            time.sleep(2)
        raise AssertionError(f"no Ray node with {resource} after {timeout}s")

    def stop(self) -> None:
        for p in reversed(self.procs):  # each `ray start --block` stops its own node's processes on SIGTERM
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start("--head", "--port", str(c.port), "--include-dashboard=false", "--temp-dir", c.tmp)
        c.wait_for("CPU")
        c.start("--address", c.address, "--resources", '{"edge-x86": 1}')
        c.wait_for("edge-x86")
        yield c
    finally:
        c.stop()


def _matrix(plan: Path, address: str, json_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemm", "matrix", str(plan), "--ray", address, "--json", str(json_path)],
                          cwd=plan.parent, env=_env(), capture_output=True, text=True, timeout=900)


def _kind_nodes(report: dict, kind: str) -> set[str]:
    return {n["node_id"] for n in report["ray"]["nodes"] if n["alive"] and n["resources"].get(kind)}


def test_cells_run_on_their_device_kind_and_a_rerun_finishes_the_lost_ones(cluster, tmp_path):
    plan = write_plan(tmp_path, precisions=("fp32",), kinds=("edge-x86", "edge-arm"), wait=5)
    first = _matrix(plan, cluster.address, tmp_path / "first.json")
    lines = [ln for ln in first.stderr.splitlines() if ln.startswith("edgemm:")]
    assert first.returncode == 2 and len(lines) == 1 and "2 lost of 4 cells" in lines[0], first.stderr[-3000:]
    assert first.stdout.startswith("# edgemm matrix"), first.stdout[:2000]  # the report only: Ray's chatter goes to -v
    report = json.loads((tmp_path / "first.json").read_text())
    x86 = _kind_nodes(report, "edge-x86")
    by_kind = {k: [r for r in report["rows"] if r["device_kind"] == k] for k in ("edge-x86", "edge-arm")}
    assert [r["status"] for r in by_kind["edge-x86"]] == ["ok", "ok"]
    assert {r["node"]["ray_node"] for r in by_kind["edge-x86"]} <= x86  # measured on the edge-x86 node
    assert [r["status"] for r in by_kind["edge-arm"]] == ["lost", "lost"]
    assert "no live node offers device kind 'edge-arm'" in by_kind["edge-arm"][0]["error"]

    cluster.start("--address", cluster.address, "--resources", '{"edge-arm": 1}')  # the missing device joins
    cluster.wait_for("edge-arm")
    second = _matrix(plan, cluster.address, tmp_path / "second.json")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "second.json").read_text())
    assert again["summary"]["ran"] == 2 and again["summary"]["skipped"] == 2
    arm = _kind_nodes(again, "edge-arm")
    for r in again["rows"]:
        assert r["status"] == "ok"
        assert r["rerun"] == (r["device_kind"] == "edge-arm")
        if r["device_kind"] == "edge-arm":
            assert r["node"]["ray_node"] in arm
