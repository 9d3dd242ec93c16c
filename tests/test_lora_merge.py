import math

import numpy as np
import pytest
import torch

from cav_core.adapter_file import AdapterFile, load_adapter_file, save_adapter_file
from cav_core.adapters import SPATIAL, LoraWeights
from cav_core.compute import default_device
from cav_core.errors import CavError
from cav_core.lora_merge import merge_adapters, merge_loras
from cav_core.sampling import SampleSettings, sample_video
from cav_core.targeting import temporal_targets
from conftest import random_lora


def _stack(unet):
    """Three LoRAs of different ranks and alphas, on overlapping but different layers (convs too)."""
    with_convs = temporal_targets(unet, include_temporal_convs=True)
    a = random_lora(unet, 1, rank=2, targets=with_convs)
    b = random_lora(unet, 2, rank=3, targets=temporal_targets(unet))
    c = random_lora(unet, 3, rank=1, targets=with_convs[:5] + with_convs[-2:])
    c = LoraWeights(c.role, c.rank, 0.5, c.tensors)  # alpha != rank: its scale is 0.5
    return [(a, 0.6), (b, -0.4), (c, 1.5)]


def _weighted_delta(stack, target):
    return sum(w * lora.delta(target) for lora, w in stack if target in lora.targets)


def _measured_error(stack, merged):
    dropped = sum(float((_weighted_delta(stack, t) - merged.delta(t)).pow(2).sum()) for t in merged.targets)
    full = sum(float(_weighted_delta(stack, t).pow(2).sum()) for t in merged.targets)
    return math.sqrt(dropped / full)


def test_merged_delta_is_the_weighted_sum_on_every_layer(tiny_base):
    stack = _stack(tiny_base.unet)
    result = merge_loras(stack)
    merged = result.lora
    assert (merged.rank, merged.alpha) == (6, 6.0) and result.relative_error == 0.0
    assert merged.targets == sorted({t for lora, _ in stack for t in lora.targets})
    for t in merged.targets:
        # Layers missing from some sources get zero blocks: one rank for every layer.
        assert merged.tensors[f"{t}.lora_A.weight"].shape[0] == 6
        assert merged.tensors[f"{t}.lora_B.weight"].shape[1] == 6
        assert torch.allclose(merged.delta(t), _weighted_delta(stack, t), atol=1e-6)
    assert any(".temp_convs." in t for t in merged.targets)


def _settings(fuse):
    return SampleSettings(prompt="a red square moving right", steps=3, frames=4, fuse=fuse)


def test_sampling_with_the_merged_file_matches_sampling_with_the_stack(tiny_base, tmp_path):
    stack = _stack(tiny_base.unet)
    sources = [(f"{i}.safetensors", AdapterFile(tiny_base.name, tiny_base.fingerprint, temporal=lora,
                                                training={"steps": i}), w) for i, (lora, w) in enumerate(stack)]
    path = save_adapter_file(tmp_path / "merged.safetensors", merge_adapters(sources))
    merged = load_adapter_file(path)
    tolerance = 1e-4 if default_device().type == "cpu" else 1e-3
    plain = sample_video(tiny_base, _settings(True))
    for fuse in (True, False):
        with_stack = sample_video(tiny_base, _settings(fuse), stack)
        with_merged = sample_video(tiny_base, _settings(fuse), [(merged.temporal, 1.0)])
        assert np.allclose(with_merged, with_stack, atol=tolerance), fuse
        assert not np.allclose(with_stack, plain, atol=1e-3)
    record = merged.training
    assert [(s["file"], s["weight"], s["training"]) for s in record["merged_from"]] == [
        ("0.safetensors", 0.6, {"steps": 0}), ("1.safetensors", -0.4, {"steps": 1}), ("2.safetensors", 1.5, {"steps": 2})]
    assert record["merged_from"][0]["base"] == {"name": tiny_base.name, "fingerprint": tiny_base.fingerprint}
    assert record["max_rank"] is None and record["relative_error"] == 0.0
    assert merged.kinds == ["temporal"] and merged.base_fingerprint == tiny_base.fingerprint


def test_svd_at_full_rank_is_exact_and_lower_ranks_report_the_error_they_make(tiny_base):
    stack = _stack(tiny_base.unet)
    full = merge_loras(stack, max_rank=6)
    assert full.lora.rank == 6 and full.relative_error < 1e-6
    for t in full.lora.targets:
        assert torch.allclose(full.lora.delta(t), _weighted_delta(stack, t), atol=1e-5)
    assert merge_loras(stack, max_rank=50).lora.rank == 6  # never above the exact rank
    errors = []
    for rank in (3, 2, 1):
        cut = merge_loras(stack, max_rank=rank)
        assert (cut.lora.rank, cut.lora.alpha) == (rank, float(rank))
        assert all(cut.lora.tensors[f"{t}.lora_A.weight"].shape[0] == rank for t in cut.lora.targets)
        assert cut.relative_error > 0
        assert cut.relative_error == pytest.approx(_measured_error(stack, cut.lora), rel=1e-4)
        errors.append(cut.relative_error)
    assert errors == sorted(errors)  # fewer ranks, more error


def test_bad_stacks_are_refused(tiny_base):
    unet = tiny_base.unet
    a = random_lora(unet, 1)
    with pytest.raises(CavError, match="nothing to merge"):
        merge_loras([])
    with pytest.raises(CavError, match="different roles"):
        merge_loras([(a, 1.0), (random_lora(unet, 2, role=SPATIAL), 1.0)])
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(CavError, match="finite number"):
            merge_loras([(a, 1.0), (a, bad)])
    with pytest.raises(CavError, match="rank must be >= 1"):
        merge_loras([(a, 1.0)], max_rank=0)
    t = a.targets[0]
    wider = dict(a.tensors, **{f"{t}.lora_A.weight": torch.zeros(a.rank, 99)})
    with pytest.raises(CavError, match="different shapes"):
        merge_loras([(a, 1.0), (LoraWeights(a.role, a.rank, a.alpha, wider), 1.0)])
    without_b = {k: v for k, v in a.tensors.items() if k != f"{t}.lora_B.weight"}
    with pytest.raises(CavError, match="damaged at layer"):
        merge_loras([(a, 1.0), (LoraWeights(a.role, a.rank, a.alpha, without_b), 1.0)])
    with pytest.raises(CavError, match="rank-3 pair"):
        merge_loras([(LoraWeights(a.role, 3, a.alpha, a.tensors), 1.0)])


def test_adapter_files_of_other_bases_or_without_motion_are_refused(tiny_base):
    lora = random_lora(tiny_base.unet, 1)
    mine = AdapterFile(tiny_base.name, tiny_base.fingerprint, temporal=lora)
    other = AdapterFile("wide", "0123456789abcdef", temporal=lora)
    with pytest.raises(CavError, match="b.safetensors was trained on base 'wide'.*only LoRAs of one base"):
        merge_adapters([("a.safetensors", mine, 1.0), ("b.safetensors", other, 1.0)])
    no_motion = AdapterFile(tiny_base.name, tiny_base.fingerprint, spatial=random_lora(tiny_base.unet, 2, role=SPATIAL))
    with pytest.raises(CavError, match="s.safetensors holds no motion"):
        merge_adapters([("a.safetensors", mine, 1.0), ("s.safetensors", no_motion, 1.0)])
    with pytest.raises(CavError, match="nothing to merge"):
        merge_adapters([])
    with pytest.raises(CavError, match="a.safetensors: the weight must be a finite number"):
        merge_adapters([("a.safetensors", mine, float("nan"))])
