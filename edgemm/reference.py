"""The fp32 torch reference of a bundle (verify's and the benchmark's baseline), obtained safely.

A bundle may name its original model by factory (trusted when it is an edgemm zoo factory or with opt-in)
and may hold the ``torch.export`` program (unpickled: opt-in only). ``torch_reference_plan`` decides
which, from the trust policy (``edgemm.trust``), and says why in one line when neither is allowed.
"""
from __future__ import annotations

from .errors import one_line
from .torchload import load_torch_program
from .trust import OPT_IN, code_allowed, is_trusted_factory, resolve_factory


def torch_reference_plan(bundle, trust_code: bool | None = None) -> dict:
    """How to get the fp32 torch reference of ``bundle`` safely (for verify and the bench baseline).

    Returns ``{"kind": "factory" | "program" | None, "factory", "checkpoint", "program", "reason"}``:

    - ``factory``: the manifest's ``model.factory`` is trusted (the zoo, or opt-in) -> the user's original
      ``nn.Module`` (zoo factories read their checkpoint weights-only); its checkpoint must exist and
      match ``model.sha256`` when the manifest records one;
    - ``program``: the bundle's ``reference/model.pt2`` (torch fp32 artifact), with opt-in only;
    - ``None``: neither; ``reason`` says why in one line (naming the opt-in), for the report.
    """
    from .bundle import resolve_file_ref
    from .files import sha256_file

    model = bundle.manifest.get("model", {})
    factory, checkpoint = model.get("factory"), model.get("checkpoint")
    refs = [a for a in bundle.artifacts if a.backend == "torch" and a.precision == "fp32"]
    program = bundle.file(refs[0].path) if refs else None
    trusted = code_allowed(bundle.root, trust_code)
    reasons = []
    if isinstance(factory, str) and factory and (trusted or is_trusted_factory(factory)):
        ok = True
        ck = resolve_file_ref(checkpoint) if checkpoint else None  # the manifest names it portably (edgemm.bundle)
        if checkpoint:
            if ck is None:
                ok = False
                reasons.append(f"the original model's checkpoint {checkpoint} is not on this machine")
            elif model.get("sha256") and sha256_file(ck) != model["sha256"]:
                ok = False
                reasons.append(f"the checkpoint {ck} differs from the one the bundle was exported from (sha256)")
        if ok:
            return {"kind": "factory", "factory": factory, "checkpoint": str(ck) if ck else None, "program": None, "reason": None}
    elif factory:
        reasons.append(f"its factory {factory!r} is code outside the edgemm zoo")
    if program is not None and trusted:
        return {"kind": "program", "factory": None, "checkpoint": None, "program": str(program), "reason": None}
    if program is not None:
        reasons.append(f"{refs[0].path} would be unpickled (torch.export.load)")
    elif not refs:
        reasons.append("the bundle has no torch fp32 artifact")
    why = "; ".join(reasons) or "nothing to build it from"
    hint = f"; rerun with {OPT_IN} to use it" if program is not None or factory else ""
    return {"kind": None, "factory": None, "checkpoint": None, "program": None,
            "reason": one_line(f"torch reference not loaded: {why}{hint}")}


def torch_reference_module(plan: dict, trust_code: bool | None = None):
    """The ``nn.Module`` (or ExportedProgram module) for a plan from ``torch_reference_plan``; None if none."""
    if plan["kind"] == "factory":
        fn = resolve_factory(plan["factory"], trust_code=trust_code)
        return fn(**({"checkpoint": plan["checkpoint"]} if plan["checkpoint"] else {}))
    if plan["kind"] == "program":
        return load_torch_program(plan["program"], trust_code=True).module()
    return None


__all__ = ["torch_reference_plan", "torch_reference_module"]
