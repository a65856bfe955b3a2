"""The pruning stage: config parsing, branch detection, structured pruning on avnet and a tiny
attention model, 2:4 sparsity, refusals, export + ONNX Runtime parity of a pruned model."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgemm.errors import EdgemmError
from edgemm.stages.prune import (ALL, STAGES, PruneConfig, is_2_4, model_branches, parse_prune, prune_model,
                                 pruning_report)
from edgemm.stages.prune.heads import prune_heads, schedule
from prune_tiny import TinyAttnAV, Untraceable, run, tiny_samples, tiny_spec


def _convs(module):
    return {n: (m.in_channels, m.out_channels) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}


def _params(module):
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ parse_prune / PruneConfig


def test_parse_forms():
    assert parse_prune(0.5).ratios == {ALL: 0.5}
    assert parse_prune("0.25").ratios == {ALL: 0.25}
    assert parse_prune("image=0.5, audio=0.3", ["image", "audio"]).ratios == {"image": 0.5, "audio": 0.3}
    assert parse_prune({"image": 0.5, "fusion": 0.3}, ["image", "audio"]).ratios == {"image": 0.5, "fusion": 0.3}
    cfg = parse_prune("2:4")
    assert cfg.sparsity == "2:4" and not cfg.ratios and not cfg.structured
    table = parse_prune({"ratio": "image=0.4", "criterion": "taylor", "epochs": 2})
    assert (table.ratios, table.criterion, table.epochs) == ({"image": 0.4}, "taylor", 2)
    assert parse_prune(0.5, epochs=3, iterative_steps=2).iterative_steps == 2
    recipe = parse_prune({"ratio": 0.5, "shift": 0.0, "bn_recalibrate": False})  # a recipe [prune] table turns them off
    assert (recipe.shift, recipe.bn_recalibrate, recipe.mixup) == (0.0, False, True)
    assert (PruneConfig(ratios={ALL: 0.5}).shift, PruneConfig(ratios={ALL: 0.5}).bn_recalibrate) == (0.125, True)
    c = PruneConfig(ratios={ALL: 0.5})
    assert c.ratio_for("image") == 0.5 and c.ratio_for("fusion") == 0.5  # a global ratio covers the whole model
    named = PruneConfig(ratios={"image": 0.5})
    assert named.ratio_for("audio") == 0.0 and named.ratio_for("fusion") == 0.0  # named branches: only those


@pytest.mark.parametrize("value,match", [
    (0.0, "outside \\(0, 1\\)"), (1.0, "outside \\(0, 1\\)"), (1.5, "outside"), (-0.2, "outside"),
    ("image=1.2", "'image' is 1.2, outside"), ("image=abc", "not a number"), ("image0.5,audio=0.3", "write BRANCH=RATIO pairs"),
    ("image=0.5,image=0.3", "given twice"), (True, "not a ratio"), ([0.5], "not understood"),
    ("3:4", "not a number"), ({"ratio": 0.5, "epoch": 3}, "did you mean 'epochs'"),
    ({"ratio": 0.5, "shift": 0.6}, "shift = 0.6 is not allowed: expected a number in \\[0, 0.5\\)"),
    ({"ratio": 0.5, "shift": -1}, "shift = -1 is not allowed"),
])
def test_parse_errors(value, match):
    with pytest.raises(EdgemmError, match=match) as err:
        parse_prune(value)
    assert "\n" not in str(err.value)


def test_unknown_branch_hint():
    with pytest.raises(EdgemmError, match="unknown prune branch 'imgae' \\(did you mean 'image'\\?\\); this model's branches are: image, audio, fusion"):
        parse_prune("imgae=0.5", ["image", "audio"])
    with pytest.raises(EdgemmError, match="criterion = 'tailor' is not allowed: expected one of 'magnitude', 'taylor' \\(did you mean 'taylor'"):
        parse_prune(0.5, criterion="tailor")
    with pytest.raises(EdgemmError, match="heads = 'narow' is not allowed: expected one of 'remove', 'narrow' \\(did you mean 'narrow'\\?\\)"):
        parse_prune(0.5, heads="narow")


def test_unknown_branch_checked_by_prune_model():
    m, spec = TinyAttnAV(), tiny_spec()
    with pytest.raises(EdgemmError, match="unknown prune branch 'video'"):
        prune_model(m, spec, "video=0.5", progress=lambda s: None)


# ------------------------------------------------------------------ branches


def test_avnet_branches(avnet_parts):
    model, spec = avnet_parts
    br = model_branches(model, spec)
    assert br["image"] == ["image"] and br["audio"] == ["audio"]
    assert {"img_from_aud", "aud_from_img", "fuse", "digit", "speaker"} <= set(br["fusion"])


def test_tiny_branches():
    br = model_branches(TinyAttnAV(), tiny_spec())
    assert set(br["image"]) == {"img", "img_proj"} and set(br["audio"]) == {"aud", "aud_proj"}
    assert set(br["fusion"]) == {"attn", "mlp", "cls", "spk"}


# ------------------------------------------------------------------ structured pruning on avnet


@pytest.fixture(scope="module")
def avnet_pruned(avnet_parts, avnet_data):
    model, spec = avnet_parts
    _, evaluation = avnet_data
    before = copy.deepcopy(model.state_dict())
    res = prune_model(model, spec, parse_prune(0.5, epochs=0, iterative_steps=2), None, evaluation.take(slice(0, 64)),
                      progress=lambda s: None)
    return model, spec, res, before


def test_avnet_user_model_untouched(avnet_pruned):
    model, _, res, before = avnet_pruned
    assert res.module is not model
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and set(before) == set(after)
    assert not model.training


@pytest.mark.parametrize("batch", [1, 3])
def test_avnet_shapes_through_branches_and_fusion(avnet_pruned, batch):
    model, spec, res, _ = avnet_pruned
    rng = np.random.default_rng(batch)
    image = torch.from_numpy(rng.standard_normal((batch, 3, 64, 64)).astype(np.float32))
    audio = torch.from_numpy(rng.standard_normal((batch, 1, 64, 98)).astype(np.float32))
    with torch.no_grad():
        digit, speaker = res.module(image, audio)
    assert digit.shape == (batch, 10) and speaker.shape == (batch, 6)


def test_avnet_channels_really_removed(avnet_pruned):
    model, _, res, _ = avnet_pruned
    old, new = _convs(model), _convs(res.module)
    # every width halves: the image CNN, the audio CNN and the token width where they meet ...
    for name in ("image.body.0.0", "image.body.1.1.0", "image.body.2.1.0", "image.body.3.1.0", "image.body.4.1.0",
                 "audio.body.0.0", "audio.body.1.0", "audio.body.2.0", "audio.body.3.0"):
        assert new[name][1] == old[name][1] // 2, name
    p = res.module
    for attn in (p.img_from_aud.attn, p.aud_from_img.attn):  # ... the attention loses 2 of its 4 heads (2 x 24)
        assert (attn.embed_dim, attn.num_heads, attn.head_dim) == (48, 2, 24)
        assert attn.in_proj_weight.shape == (3 * 48, 48) and attn.out_proj.weight.shape == (48, 48)
    [group] = [g for g in res.report["groups"] if "attention" in g]
    assert group["heads"] == [4, 2] and group["head_dim"] == [24, 24]
    assert sorted(group["attention"]) == ["aud_from_img.attn", "img_from_aud.attn"]
    assert p.img_pos.shape == (1, 64, 48) and p.img_from_aud.norm.normalized_shape == (48,)
    # the concat of four pooled 48-wide features feeds the MLP, whose hidden width halves too
    assert p.fuse[0].in_features == 4 * 48 and p.fuse[0].out_features == 64
    # ... inputs and heads stay
    assert new["image.body.0.0"][0] == 3 and new["audio.body.0.0"][0] == 1
    assert p.digit.out_features == 10 and p.speaker.out_features == 6
    rep = res.report
    assert _params(p) == rep["params"]["after"] < 0.35 * rep["params"]["before"] == 0.35 * _params(model)
    assert rep["flops"]["after"] < 0.35 * rep["flops"]["before"]
    assert set(rep["accuracy"]) >= {"before", "after_pruning"} and rep["accuracy"]["before"]["digit"] > 0.9


def _kept_channels(model, pruned, name):
    """Original token channels the pruned attention block kept (where its LayerNorm's weights came from)."""
    ln0, ln1 = getattr(model, name).norm.weight.detach(), getattr(pruned, name).norm.weight.detach()
    return [int((ln0 == w).nonzero()[0]) for w in ln1]


def test_avnet_whole_heads_leave(avnet_parts):
    """0.5 removes two whole heads: the kept channels are two complete heads of the original, and the pruned
    attention computes exactly what the original computes with those two heads' outputs dropped."""
    model, spec = avnet_parts
    p = prune_model(model, spec, parse_prune(0.5, epochs=0), progress=lambda s: None).module
    rng = np.random.default_rng(0)
    for name in ("img_from_aud", "aud_from_img"):
        before, after = getattr(model, name).attn, getattr(p, name).attn
        kept, d = _kept_channels(model, p, name), before.head_dim
        heads = sorted({k // d for k in kept})
        assert len(heads) == 2 and kept == [h * d + i for h in heads for i in range(d)]
        ref = copy.deepcopy(before).eval()
        dropped = [c for c in range(before.embed_dim) if c not in kept]
        with torch.no_grad():
            ref.out_proj.weight[:, dropped] = 0  # the removed heads' outputs, gone
            q = torch.from_numpy(rng.standard_normal((2, 5, after.embed_dim)).astype(np.float32))
            kv = torch.from_numpy(rng.standard_normal((2, 7, after.embed_dim)).astype(np.float32))
            wide = lambda t: torch.zeros(*t.shape[:2], before.embed_dim).index_copy_(2, torch.tensor(kept), t)  # noqa: E731
            got = after(q, kv, kv, need_weights=False)[0]
            want = ref(wide(q), wide(kv), wide(kv), need_weights=False)[0][..., kept]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_avnet_narrow_heads_keep_their_own_channels(avnet_parts):
    """heads="narrow": every head keeps channels of its own head, the same positions in every head (no mixing)."""
    model, spec = avnet_parts
    res = prune_model(model, spec, parse_prune(0.5, epochs=0, heads="narrow"), progress=lambda s: None)
    p = res.module
    assert not [g for g in res.report["groups"] if "attention" in g] and res.report["request"]["heads"] == "narrow"
    for name in ("img_from_aud", "aud_from_img"):
        before, after = getattr(model, name).attn, getattr(p, name).attn
        assert (after.embed_dim, after.num_heads, after.head_dim) == (48, 4, 12)
        e0, e1, hd0 = before.embed_dim, after.embed_dim, before.head_dim
        kept = _kept_channels(model, p, name)
        assert torch.equal(before.in_proj_weight[:e0][kept][:, kept], after.in_proj_weight[:e1])  # q rows follow them
        positions = [sorted(k % hd0 for k in kept if k // hd0 == h) for h in range(before.num_heads)]
        assert all(pos == positions[0] for pos in positions) and len(positions[0]) == after.head_dim


@pytest.mark.parametrize("ratio, steps, plan", [
    (0.5, 1, [(2, 24)]), (0.5, 2, [(3, 24), (2, 24)]), (0.3, 1, [(3, 22)]), (0.1, 1, [(4, 21)]),
    (0.2, 1, [(3, 24)]), (0.9, 1, [(1, 9)]), (0.6, 3, [(3, 22), (3, 21), (2, 19)]),
])
def test_head_schedule(ratio, steps, plan):
    """Heads left = round(H * (1 - r)) (at least 1), the rest narrowed to the ratio; steps move linearly."""
    assert schedule(4, 24, ratio, steps) == plan


def test_head_pruning_invariant_is_an_explicit_check():
    """A head plan the attention cannot reach raises (a bug, not a user error), also under python -O."""
    from edgemm.stages.prune.branches import example_args, module_branches
    from edgemm.stages.prune.structured import StructuredPruner

    m, spec = TinyAttnAV(), tiny_spec()
    args = example_args(spec, batch=2)
    pruner = StructuredPruner(m, spec, parse_prune(0.5), args, module_branches(m, spec))
    [(_, hg)] = pruner.head_groups
    hg.plan = [(2, 6)]  # 2 heads of 6: wider than the 4-wide heads there are
    with pytest.raises(RuntimeError, match=r"bug in edgemm's head pruning: attention 'attn' has .* \(8, 2, 4\) .* expected \(12, 2, 6\)") as err:
        prune_heads(pruner.pruner, pruner._tp, hg, 0, taylor=False)
    assert not isinstance(err.value, EdgemmError)


def test_avnet_per_branch_ratio_touches_only_that_branch(avnet_parts):
    model, spec = avnet_parts
    res = prune_model(model, spec, "image=0.5", progress=lambda s: None)
    old, new = _convs(model), _convs(res.module)
    changed = {n for n in old if old[n] != new[n]}
    assert changed and all(n.startswith("image.") for n in changed)
    assert all(new[n] == old[n] for n in old if n.startswith("audio."))
    assert {g["branch"] for g in res.report["groups"] if g["ratio"] > 0} == {"image"}


# ------------------------------------------------------------------ the tiny attention model


def test_tiny_fusion_prunes_attention_and_mlp_width():
    m, spec = TinyAttnAV(), tiny_spec()
    res = prune_model(m, spec, "image=0.5,audio=0.5,fusion=0.5", progress=lambda s: None)
    p = res.module
    assert (p.attn.embed_dim, p.attn.num_heads, p.attn.head_dim) == (8, 2, 4) and p.img_proj.out_features == 8
    assert p.mlp[0].out_features == 16 and p.cls.out_features == 4 and p.spk.out_features == 3
    feeds = tiny_samples(m, 5, seed=3).feeds
    assert [o.shape for o in run(p, feeds)] == [(5, 4), (5, 3)]


class TwoHeadCounts(TinyAttnAV):
    """Two attentions on one token width with 4 and 2 heads: their heads do not line up channel for channel."""

    def __init__(self):
        super().__init__()
        self.attn2 = nn.MultiheadAttention(16, 2, batch_first=True)
        self.eval()

    def forward(self, image, audio):
        it = self.img_proj(self.img(image).flatten(2).transpose(1, 2))
        at = self.aud_proj(self.aud(audio).flatten(2).transpose(1, 2))
        x = it + self.attn(it, at, at, need_weights=False)[0]
        x = x + self.attn2(x, x, x, need_weights=False)[0]
        z = self.mlp(x.mean(1))
        return self.cls(z), self.spk(z)


def test_heads_that_do_not_line_up_are_narrowed():
    m, spec = TwoHeadCounts(), tiny_spec()
    res = prune_model(m, spec, 0.5, progress=lambda s: None)
    p = res.module
    assert (p.attn.embed_dim, p.attn.num_heads, p.attn.head_dim) == (8, 4, 2)
    assert (p.attn2.embed_dim, p.attn2.num_heads, p.attn2.head_dim) == (8, 2, 4)
    assert not [g for g in res.report["groups"] if "attention" in g]
    feeds = tiny_samples(m, 3, seed=4).feeds
    assert [o.shape for o in run(p, feeds)] == [(3, 4), (3, 3)]


def test_keep_leaves_the_named_modules_channel_groups_whole():
    """keep: the named module's group (and only it) keeps its width; a container name covers the modules under it."""
    m, spec = TinyAttnAV(), tiny_spec()
    res = prune_model(m, spec, parse_prune(0.5, keep=["mlp.0", "img.0"]), progress=lambda s: None)
    p = res.module
    assert p.mlp[0].out_features == 32 and p.img[0][0].out_channels == 16  # kept
    assert p.attn.embed_dim == 8 and p.aud[0][0].out_channels == 8 and p.img[1][0].out_channels == 12  # pruned
    assert {tuple(g["modules"]) for g in res.report["groups"] if g["ratio"] == 0} >= {("mlp.0",)}
    assert res.report["request"]["keep"] == ["mlp.0", "img.0"]
    feeds = tiny_samples(m, 3, seed=5).feeds
    assert [o.shape for o in run(p, feeds)] == [(3, 4), (3, 3)]


def test_keep_an_attention_keeps_its_heads():
    m, spec = TinyAttnAV(), tiny_spec()
    p = prune_model(m, spec, parse_prune(0.5, keep="attn"), progress=lambda s: None).module
    assert (p.attn.embed_dim, p.attn.num_heads) == (16, 4) and p.mlp[0].out_features == 16


@pytest.mark.parametrize("keep, match", [
    ("mpl.0", r"prune keep names no module 'mpl\.0' \(did you mean 'mlp\.0'\?\)"),
    ("cls", r"prune keep 'cls' covers no prunable channels"),
])
def test_keep_bad_names(keep, match):
    with pytest.raises(EdgemmError, match=match):
        prune_model(TinyAttnAV(), tiny_spec(), parse_prune(0.5, keep=keep), progress=lambda s: None)


def test_tiny_named_branches_keep_attention():
    m, spec = TinyAttnAV(), tiny_spec()
    p = prune_model(m, spec, "image=0.5,audio=0.5", progress=lambda s: None).module
    assert p.attn.embed_dim == 16 and p.attn.num_heads == 4 and p.mlp[0].out_features == 32
    assert p.img_proj.in_features == 12 and p.aud_proj.in_features == 12


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_tiny_finetune_with_distillation(criterion, quiet):
    m, spec = TinyAttnAV(), tiny_spec()
    train, evaluation = tiny_samples(m, 128, seed=1), tiny_samples(m, 64, seed=2)
    sink, lines = quiet
    res = prune_model(m, spec, parse_prune(0.6, criterion=criterion, epochs=4, iterative_steps=2, lr=3e-3), train, evaluation, progress=sink)
    acc = res.report["accuracy"]
    assert acc["before"] == {"cls": 1.0, "spk": 1.0}
    assert set(acc["after_finetune"]) == {"cls", "spk"}
    assert sum(acc["after_finetune"].values()) >= sum(acc["after_pruning"].values())
    assert any("epoch 2/2" in line and "loss" in line and "cls" in line for line in lines)
    assert res.report["finetune"]["epochs"] == 4 and res.report["finetune"]["samples"] == 128
    assert res.report["finetune"]["split"] == "random-1"


def test_finetune_minutes_budget():
    m, spec = TinyAttnAV(), tiny_spec()
    train = tiny_samples(m, 64, seed=1)
    # 0.6 ms: spent before the first epoch ends on any machine (0.06 s let a fast CPU finish two epochs of 64 samples)
    res = prune_model(m, spec, parse_prune(0.5, finetune_minutes=1e-5, iterative_steps=1), train, None, progress=lambda s: None)
    assert res.report["finetune"]["seconds"] < 10
    assert res.report["finetune"]["epochs"] <= 1


# ------------------------------------------------------------------ 2:4 sparsity


def test_two_four_sparsity():
    m, spec = TinyAttnAV(), tiny_spec()
    train = tiny_samples(m, 64, seed=1)
    res = prune_model(m, spec, parse_prune("2:4", epochs=2), train, None, progress=lambda s: None)
    p = res.module
    assert res.sparse_layers and "img.0.0" not in res.sparse_layers  # a 3-channel stem stays dense
    assert {"img.1.0", "aud.1.0", "img_proj", "mlp.0", "attn.out_proj"} <= set(res.sparse_layers)
    for name in res.sparse_layers:
        w = p.get_submodule(name).weight
        assert is_2_4(w), name  # the mask survived fine-tuning
        assert float((w == 0).float().mean()) >= 0.5 - 1e-6
    assert _params(p) == _params(m) and not is_2_4(m.get_submodule("mlp.0").weight)
    assert res.report["sparsity"] == {"pattern": "2:4", "layers": res.sparse_layers, "cpu_speedup": False}


def test_two_four_keep_leaves_the_named_layers_dense():
    """2:4 alone with keep: the named layers (and those under a container name) stay dense, the others get 2:4."""
    m, spec = TinyAttnAV(), tiny_spec()
    res = prune_model(m, spec, parse_prune("2:4", epochs=0, keep="mlp.0,img"), progress=lambda s: None)
    p = res.module
    for name in ("mlp.0", "img.1.0"):  # img covers img.1.0 (img.0.0, a 3-channel stem, is dense anyway)
        assert name not in res.sparse_layers
        assert torch.equal(p.get_submodule(name).weight, m.get_submodule(name).weight), name
    assert {"aud.1.0", "img_proj", "aud_proj", "attn.out_proj", "cls", "spk"} <= set(res.sparse_layers)
    for name in res.sparse_layers:
        w = p.get_submodule(name).weight
        assert is_2_4(w) and float((w == 0).float().mean()) >= 0.5 - 1e-6, name
    assert res.report["request"]["keep"] == ["mlp.0", "img"]
    assert res.report["sparsity"]["layers"] == res.sparse_layers


def test_two_four_keep_with_channel_ratios():
    """Channel pruning + 2:4: a kept layer keeps its width and stays dense."""
    m, spec = TinyAttnAV(), tiny_spec()
    res = prune_model(m, spec, parse_prune({"ratio": 0.5, "sparsity": "2:4", "keep": ["mlp.0"], "epochs": 0}), progress=lambda s: None)
    p = res.module
    assert p.mlp[0].out_features == 32 and "mlp.0" not in res.sparse_layers and bool((p.mlp[0].weight != 0).all())
    assert {"aud.1.0", "cls"} <= set(res.sparse_layers) and all(is_2_4(p.get_submodule(n).weight) for n in res.sparse_layers)


def test_two_four_keep_with_channel_ratios_accepts_a_layer_only_2_4_touches():
    """Channel pruning + 2:4: an output head (no channel group of its own) named in keep stays dense."""
    m, spec = TinyAttnAV(), tiny_spec()
    res = prune_model(m, spec, parse_prune({"ratio": 0.5, "sparsity": "2:4", "keep": ["cls"], "epochs": 0}), progress=lambda s: None)
    assert "cls" not in res.sparse_layers and "spk" in res.sparse_layers
    assert bool((res.module.cls.weight != 0).all()) and res.module.mlp[0].out_features == 16
    with pytest.raises(EdgemmError, match=r"prune keep 'mlp\.1' covers no prunable channels .* nor a layer 2:4 applies to"):
        prune_model(m, spec, parse_prune({"ratio": "audio=0.5", "sparsity": "2:4", "keep": ["mlp.1"], "epochs": 0}), progress=lambda s: None)


@pytest.mark.parametrize("keep, match", [
    ("mpl.0", r"prune keep names no module 'mpl\.0' \(did you mean 'mlp\.0'\?\)"),
    ("img.0", r"prune keep 'img\.0' covers no layer that 2:4 sparsity applies to"),  # the 3-channel stem: dense anyway
])
def test_two_four_keep_bad_names(keep, match):
    with pytest.raises(EdgemmError, match=match) as err:
        prune_model(TinyAttnAV(), tiny_spec(), parse_prune("2:4", epochs=0, keep=keep), progress=lambda s: None)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ refusals


def test_pt2_program_refused(tmp_path):
    m, spec = TinyAttnAV(), tiny_spec()
    feeds = tiny_samples(m, 2, seed=0).feeds
    ep = torch.export.export(m, (torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"])))
    with pytest.raises(EdgemmError, match="torch.export program \\(.pt2\\) cannot be pruned.*pass the nn.Module") as err:
        prune_model(ep, spec, 0.5, progress=lambda s: None)
    assert "\n" not in str(err.value)


def test_untraceable_model_names_the_module():
    with pytest.raises(EdgemmError, match="cannot trace module 'img.0.0' \\(Conv2d\\) of branch 'image'") as err:
        prune_model(Untraceable(), tiny_spec(), "image=0.5", progress=lambda s: None)
    assert "\n" not in str(err.value) and "torch-pruning" in str(err.value)


# ------------------------------------------------------------------ export + parity


def test_pruned_exports_with_same_spec_and_parity(tmp_path):
    import edgemm

    m, spec = TinyAttnAV(), tiny_spec()
    pruned = prune_model(m, spec, "image=0.5,audio=0.5,fusion=0.5", progress=lambda s: None).module
    feeds = tiny_samples(m, 4, seed=5).feeds
    sizes = {}
    for kind, module in (("base", m), ("pruned", pruned)):
        b = edgemm.export(module, example_inputs=feeds, spec=spec, output=tmp_path / kind, targets=["onnxruntime"])
        assert b.spec.input_names == ["image", "audio"] and b.spec.output_names == ["cls", "spk"]
        sizes[kind] = (b.root / "onnx/model.fp32.onnx").stat().st_size
        for n in (1, 3):
            f = {k: v[:n] for k, v in tiny_samples(m, 3, seed=6 + n).feeds.items()}
            with edgemm.load(b.root, backend="onnxruntime", precision="fp32") as rt:
                out = rt.run(f)
            for got, want in zip(out.values(), run(module, f)):
                assert got.shape[0] == n
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert sizes["pruned"] < 0.7 * sizes["base"]


# ------------------------------------------------------------------ report helper


def test_pruning_report_keys():
    rep = pruning_report(request={"ratios": {"*": 0.5}}, params=(100, 60), flops=(1000, 400), size_bytes=(4000, 2500),
                         latency_ms={"onnxruntime": {"before": 2.0, "after": 1.0, "batch": 1, "threads": 2}},
                         accuracy={"before": {"digit": 0.96}, "after_pruning": {"digit": 0.6}, "after_finetune": {"digit": 0.955},
                                   "after_int8": {"digit": 0.95}})
    assert rep["params"] == {"before": 100, "after": 60, "ratio": 0.6} and rep["flops"]["ratio"] == 0.4
    assert rep["latency_ms"]["onnxruntime"]["speedup"] == 2.0
    assert set(rep["accuracy"]) == set(STAGES)
    assert rep["drop"]["after_finetune"]["digit"] == pytest.approx(0.005) and "before" not in rep["drop"]
    with pytest.raises(ValueError, match="unknown accuracy stage"):
        pruning_report(accuracy={"after_qat": {"digit": 0.9}})


# ------------------------------------------------------------------ avnet fine-tune (short)


@pytest.mark.slow
def test_avnet_finetune_recovers(avnet_parts, avnet_data, quiet):
    model, spec = avnet_parts
    train, evaluation = avnet_data
    sink, lines = quiet
    res = prune_model(model, spec, parse_prune(0.5, epochs=2, iterative_steps=1), train.take(slice(0, 160)),
                      evaluation.take(slice(0, 200)), progress=sink)
    acc = res.report["accuracy"]
    assert acc["after_finetune"]["digit"] > acc["after_pruning"]["digit"] + 0.05
    assert acc["after_finetune"]["speaker"] > acc["after_pruning"]["speaker"]
    assert any("epoch 2/2" in line for line in lines)


# ------------------------------------------------------------------ fine-tune: shifts, BatchNorm re-estimation


def _trainer(cfg, n=64, modalities=("image", "audio")):
    from dataclasses import replace

    from edgemm.stages.prune.finetune import Trainer

    m, spec = TinyAttnAV(), tiny_spec()
    spec = replace(spec, inputs=tuple(replace(t, modality=k) for t, k in zip(spec.inputs, modalities)))
    student = copy.deepcopy(m)
    return Trainer(student, m, spec, tiny_samples(m, n, seed=1), cfg)


def _crops(x, ph, pw):
    """Every translation of ``x`` [C, H, W] by up to (ph, pw) with the edges replicated."""
    p = torch.nn.functional.pad(x[None], (pw, pw, ph, ph), mode="replicate")[0]
    h, w = x.shape[-2:]
    return [p[:, dy:dy + h, dx:dx + w] for dy in range(2 * ph + 1) for dx in range(2 * pw + 1)]


def test_shift_translates_images_in_space_and_audio_in_time():
    t = _trainer(parse_prune(0.5, shift=0.25))  # 8x8 image: up to 2 px each way; 10 audio frames: up to 2 frames
    image = torch.randn(16, 3, 8, 8)
    audio = torch.randn(16, 1, 8, 10)
    si, sa = t._shifted([image, audio])
    assert si.shape == image.shape and sa.shape == audio.shape
    assert all(any(torch.equal(s, c) for c in _crops(x, 2, 2)) for s, x in zip(si, image))
    assert all(any(torch.equal(s, c) for c in _crops(x, 0, 2)) for s, x in zip(sa, audio))  # time only: mel bands stay
    assert not torch.equal(si, image) and not torch.equal(sa, audio)
    t = _trainer(parse_prune(0.5, shift=0.25), modalities=("tensor", "tensor"))
    assert all(torch.equal(a, b) for a, b in zip(t._shifted([image, audio]), [image, audio]))  # plain tensors: untouched


def test_bn_recalibrate_puts_statistics_back_on_the_training_inputs():
    t = _trainer(parse_prune(0.5, bn_recalibrate=True))
    bn = t.student.img[0][1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    assert t.recalibrate_bn()
    with torch.no_grad():
        out = t.student.img[0][0](t.xs[0])  # the conv before that BatchNorm, on all 64 training inputs (2 batches of 32)
    assert torch.allclose(bn.running_mean, out.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and not t.student.training


def test_finetune_with_shift_and_bn_recalibrate_runs(quiet):
    m, spec = TinyAttnAV(), tiny_spec()
    train, evaluation = tiny_samples(m, 96, seed=1), tiny_samples(m, 64, seed=2)
    sink, lines = quiet
    res = prune_model(m, spec, parse_prune(0.5, epochs=2, shift=0.125, bn_recalibrate=True), train, evaluation, progress=sink)
    assert any("BatchNorm statistics re-estimated" in line for line in lines)
    assert res.report["finetune"]["epochs"] == 2
