"""No phoning home: usage telemetry of the libraries edgemm drives (OpenVINO, NNCF) is switched off."""
from __future__ import annotations


def disable_telemetry() -> None:
    """Stop OpenVINO / NNCF usage telemetry for this process (idempotent; call before importing nncf).

    Why: ``openvino_telemetry`` sends each event from a *forked* ``multiprocessing.Process`` (one per event,
    60+ during one NNCF quantization) that calls ``urlopen`` and is joined with a timeout. Those children sit in
    edgemm's process group, so a terminal's Ctrl-C hits them too: each prints its own KeyboardInterrupt
    traceback (the user's one line is buried), and on a machine whose network hangs instead of failing
    (typical on an edge box) the export waits for them instead of stopping. An edge deployment tool makes
    no network calls the user did not ask for.
    """
    import os
    import sys

    os.environ.setdefault("NNCF_CI", "1")  # read once, when nncf.telemetry is imported: telemetry -> stub
    wrapper = sys.modules.get("nncf.telemetry.wrapper")
    if wrapper is not None and hasattr(wrapper, "NNCFTelemetryStub"):
        wrapper.telemetry = wrapper.NNCFTelemetryStub()  # nncf was imported before us
    try:
        from openvino_telemetry.backend import backend_ga4  # used by openvino.convert_model and nncf
    except Exception:  # not installed (or broken): nothing will be sent
        return
    backend = getattr(backend_ga4, "GA4Backend", None)
    if backend is not None and not getattr(backend.send, "_edgemm_off", False):
        def send(self, message):  # noqa: ARG001 - drop every event, fork nothing
            return None

        send._edgemm_off = True  # type: ignore[attr-defined]
        backend.send = send


__all__ = ["disable_telemetry"]
