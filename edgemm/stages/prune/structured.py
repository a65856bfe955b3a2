"""Structured pruning with torch-pruning's DepGraph: channels, MLP widths and attention heads removed
for real (the module gets physically smaller), per branch, iteratively."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

from ...lazy import lazy_import
from ...errors import EdgemmError
from ...iospec import IOSpec
from .branches import group_branch, group_members
from .config import FUSION, PruneConfig
from .keep import covers, kept_by
from .sparsity import sparse_candidates
from .heads import HeadGroup, find_head_groups, prune_heads

INSTALL = "pip install 'edgemm[prune]' (torch-pruning)"


def torch_pruning():
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise EdgemmError(f"pruning needs torch-pruning, which is not installed; {INSTALL}") from exc
    return tp


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def run_checked(model, args):
    """Run ``model(*args)``; a failure -> EdgemmError naming the innermost module that raised."""
    torch = lazy_import("torch")
    stack: list[str] = []
    failed: list[str] = []
    hooks = []
    def enter(name):
        def pre(_m, _i):
            stack.append(name)
        return pre

    def leave(_m, _i, _o):
        if stack:
            stack.pop()

    for name, m in model.named_modules():
        hooks.append(m.register_forward_pre_hook(enter(name)))
        hooks.append(m.register_forward_hook(leave))
    try:
        with torch.no_grad():
            return model(*args)
    except Exception as exc:
        failed.append(stack[-1] if stack else "")
        where = f"module {failed[0]!r} ({type(model.get_submodule(failed[0])).__name__})" if failed[0] else f"{type(model).__name__}.forward"
        raise EdgemmError(
            f"after pruning, {where} fails ({type(exc).__name__}: {_first_line(exc)}): torch-pruning cannot trace "
            f"how its channels connect; leave that branch out of --prune (or lower its ratio to 0) or make it traceable"
        ) from exc
    finally:
        for h in hooks:
            h.remove()


def output_modules(model, args) -> list:
    """Modules whose output tensor *is* a model output (classification heads): their widths stay."""
    torch = lazy_import("torch")
    nn = torch.nn
    ptrs: dict[int, object] = {}
    keep: list = []  # hold every output so that no freed buffer is reused (data_ptr stays unique)

    def hook(m, _i, o):
        if isinstance(o, torch.Tensor):
            keep.append(o)
            ptrs[o.data_ptr()] = m

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            out = model(*args)
    finally:
        for h in hooks:
            h.remove()
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return [ptrs[o.data_ptr()] for o in outs if isinstance(o, torch.Tensor) and o.data_ptr() in ptrs]


def declared_attention_projections(model) -> list:
    """The q/k/v/out projections of the attention modules the model's family declares (``edgemm.families``:
    ``Family.attention``, recorded on the graph module as ``edgemm_attention``): torch-pruning does not know that
    their output channels are split into heads (the model reshapes them by ``head_dim``), so they stay whole."""
    nn = lazy_import("torch").nn
    out = []
    for path, pattern in (getattr(model, "edgemm_attention", None) or {}).items():
        try:
            attention = model.get_submodule(path)
        except AttributeError:  # the family named a module this (copied, narrowed) model no longer has
            continue
        out.extend(m for m in (getattr(attention, n, None) for n in pattern.projections()) if isinstance(m, nn.Linear))
    return out


def enable_feature_concats(dg) -> None:
    """Re-enable index mapping on concats that join features.

    torch-pruning switches index mapping off for every concat with a 3-D parameter upstream (its
    workaround for ViT's ``cat([cls_token, x], dim=1)``, a concat over tokens). A positional embedding
    before a feature concat (pooled branch features -> the fusion MLP) then leaves the layer after the
    concat with one input's channels removed instead of every input's. Where the concat's input widths
    add up to its consumer's width it joins features, and the mapping is turned back on."""
    from torch_pruning import ops
    from torch_pruning.dependency import shape_infer

    for node in dg.module2node.values():
        if node.type != ops.OPTYPE.CONCAT or node.enable_index_mapping:
            continue
        widths = [shape_infer.infer_channels_between(dg, n, node) for n in node.inputs]
        out = shape_infer.infer_in_channels_recursively(dg, node, recursive_depth=[0])
        if None not in widths and out is not None and sum(widths) == out:
            node.enable_index_mapping = True


def _kept_groups(members: Mapping[int, list[str]], known: Sequence[str], keep: Sequence[str], dense: Sequence[str] = ()) -> set[int]:
    """ids of the groups whose output channels a ``keep`` name covers (the module itself, or any module under it,
    ``image.body.0`` -> ``image.body.0.0``); a name that is no module, or covers no prunable channels, is refused.
    ``dense``: layers the request's 2:4 step would sparsify; a name that covers only those keeps them dense
    (sparsity.apply_2_4) and is accepted here."""
    grouped = [m for ms in members.values() for m in ms]
    own = [k for k in keep if not (any(covers(k, m) for m in dense) and not any(covers(k, m) for m in grouped))]
    return kept_by(members, known, own, "prune keep {name!r} covers no prunable channels (it is an input, output or parameter-free "
                                        "module)" + (" nor a layer 2:4 applies to" if dense else "")
                   + "; name a conv / linear / attention module, or a container of them")


def _importance(tp, criterion: str):
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=2)


@dataclass
class GroupInfo:
    branch: str
    modules: list[str]  # modules whose output channels the group removes
    channels: int
    ratio: float
    heads: HeadGroup | None = None  # attentions whose whole heads this group removes


class StructuredPruner:
    """Wraps ``tp.pruner.MetaPruner``: the ratio of each group comes from the branch it belongs to."""

    def __init__(self, model, spec: IOSpec, cfg: PruneConfig, args, branches: Mapping[str, str]):
        tp = torch_pruning()
        torch = lazy_import("torch")
        nn = torch.nn
        self.model = model
        names = {m: n for n, m in model.named_modules() if n}
        heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
        ignored = output_modules(model, args) + declared_attention_projections(model)
        roots = [nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.LSTM, nn.MultiheadAttention]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Unwrapped parameters detected ..." (handled: they follow their group)
                dg = tp.DependencyGraph().build_dependency(model, example_inputs=list(args))
                enable_feature_concats(dg)
                groups = list(dg.get_all_groups(ignored_layers=ignored, root_module_types=roots))
        except Exception as exc:  # torch-pruning raises many types on graphs it cannot follow
            raise EdgemmError(
                f"torch-pruning cannot trace {type(model).__name__} ({type(exc).__name__}: {_first_line(exc)}); "
                f"make forward() a plain tensor computation (no .numpy(), no data-dependent Python control flow) or prune without it"
            ) from exc
        inside_mha = {id(c) for h in heads for c in h.modules() if c is not h}  # out_proj: used functionally by MHA
        for name, m in model.named_modules():
            branch = branches.get(name, FUSION)
            if (isinstance(m, tuple(roots)) and id(m) not in inside_mha and m not in dg.module2node
                    and branch != FUSION and cfg.ratio_for(branch) > 0):
                raise EdgemmError(
                    f"torch-pruning cannot trace module {name!r} ({type(m).__name__}) of branch {branches.get(name, FUSION)!r}: "
                    f"its output leaves autograd (.numpy(), .detach(), .item() or Python data in forward()); "
                    f"keep that branch as plain tensor ops or leave it out of --prune"
                )
        self.groups: list[GroupInfo] = []
        members_of = {id(g): group_members(g, names) for g in groups}
        dense = list(sparse_candidates(model)) if cfg.sparsity == "2:4" else []
        kept = _kept_groups(members_of, list(names.values()), cfg.keep, dense)
        branch_of = {id(g): group_branch(g, names, branches) for g in groups}
        ratio_of = lambda g: 0.0 if id(g) in kept else cfg.ratio_for(branch_of[id(g)])  # noqa: E731
        # whole heads leave where the attentions' heads line up (heads.py); torch-pruning's MetaPruner
        # gets ratio 0 for those groups and narrows heads only where they do not (the fallback)
        self.head_groups = find_head_groups(dg, groups, names, ratio_of, cfg.iterative_steps) if cfg.heads == "remove" else []
        by_head = {id(g): hg for g, hg in self.head_groups}
        ratio_dict = {}
        for g in groups:
            branch = branch_of[id(g)]
            members = members_of[id(g)]
            ratio = ratio_of(g)
            self.groups.append(GroupInfo(branch, members, len(g[0][1]), ratio, by_head.get(id(g))))
            for n in members:
                ratio_dict[model.get_submodule(n)] = 0.0 if id(g) in by_head else ratio
        self.ignored = [names.get(m, "") for m in ignored]
        # Fallback: nn.MultiheadAttention ties its inner (q/k/v) width to the token width (embed_dim);
        # where its heads cannot leave whole, its width is pruned per head: the same head dims go from
        # every head (channel groups = heads), which keeps each head's channels together.
        kwargs = dict(
            importance=_importance(tp, cfg.criterion), pruning_ratio=0.0, pruning_ratio_dict=ratio_dict or None,
            ignored_layers=ignored, iterative_steps=cfg.iterative_steps, root_module_types=roots,
        )  # no num_heads: torch-pruning's head handling wants separate q/k/v Linear layers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.pruner = tp.pruner.MetaPruner(model, list(args), **kwargs)
            enable_feature_concats(self.pruner.DG)
        removing = {id(m) for _, hg in self.head_groups for m in hg.modules}
        for m, n in heads.items():
            if id(m) not in removing:
                self.pruner.out_channel_groups[m] = self.pruner.in_channel_groups[m] = n
        self._tp, self._taylor, self._step = tp, cfg.criterion == "taylor", 0
        self.args = args

    @property
    def steps(self) -> int:
        return self.pruner.iterative_steps

    def step(self) -> None:
        """One iterative step: remove the next share of channels (importance measured now)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.pruner.step()
            for _, hg in self.head_groups:
                prune_heads(self.pruner, self._tp, hg, self._step, self._taylor)
        self._step += 1

    def summary(self) -> list[dict]:
        out = []
        for g in self.groups:
            row = {"branch": g.branch, "modules": g.modules, "channels": g.channels, "ratio": g.ratio}
            if g.heads is not None:
                row.update(g.heads.summary())
            out.append(row)
        return out


def count(model, args) -> dict:
    """Parameters and FLOPs (multiply-accumulates counted by torch-pruning's op counter x 2)."""
    tp = torch_pruning()
    torch = lazy_import("torch")
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, _ = tp.utils.count_ops_and_params(model, list(args))
    finally:
        model.train(was)
    return {"params": int(sum(p.numel() for p in model.parameters())), "flops": int(2 * macs)}


def output_shapes(out) -> list[tuple]:
    torch = lazy_import("torch")
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return [tuple(o.shape) for o in outs]


def check_same_io(model, spec: IOSpec, args, want: Sequence[tuple]) -> None:
    """The pruned module still takes the spec's inputs and returns the same output shapes (any batch)."""
    from .branches import example_args

    got = output_shapes(run_checked(model, args))
    if got != list(want):
        raise EdgemmError(
            f"pruning changed the output shapes of {type(model).__name__} from {list(want)} to {got}; "
            f"a head is not a plain module output here, leave the fusion part intact (no fusion=)"
        )
    odd = example_args(spec, batch=3, seed=1)
    got3 = output_shapes(run_checked(model, odd))
    if [g[1:] for g in got3] != [w[1:] for w in want] or any(g[0] != 3 for g in got3):
        raise EdgemmError(f"the pruned {type(model).__name__} does not keep a dynamic batch axis (batch 3 gave {got3}); report this as a bug")
