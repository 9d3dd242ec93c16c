"""MotionDirector's temporal LoRA files, written here the way its code writes them, imported."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from cav_core.adapter_file import AdapterFile, check_adapter_fits, save_adapter_file
from cav_core.errors import CavError
from cav_core.motiondirector_import import import_motiondirector, motiondirector_targets
from cav_core.targeting import temporal_targets
from conftest import random_lora


def md_order(unet):
    """MotionDirector's layers in its order: the temporal transformers' attention and feed-forward
    linears (transformer_in too) as unet.named_modules() meets them."""
    wanted = set(temporal_targets(unet, include_transformer_in=True, include_feed_forward=True))
    return [name for name, _ in unet.named_modules() if name in wanted]


def md_pairs(unet, rank=12, seed=0):
    """(target, up [out, r], down [r, in]) per layer; MotionDirector clamps r to min(in, out)."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(unet.named_modules())
    pairs = []
    for name in md_order(unet):
        layer = modules[name]
        r = min(rank, layer.in_features, layer.out_features)
        pairs.append((name, torch.randn(layer.out_features, r, generator=g) * 0.2,
                      torch.randn(r, layer.in_features, generator=g) * 0.2))
    return pairs


def write_pt(path, pairs, as_parameters=False):
    """torch.save of the plain list [up_0, down_0, up_1, down_1, ...]."""
    wrap = torch.nn.Parameter if as_parameters else (lambda t: t)
    torch.save([wrap(t) for _, up, down in pairs for t in (up, down)], path)
    return str(path)


def write_safetensors(path, pairs, scale=1.0, model="unet", classes=("TransformerTemporalModel",)):
    """Its safetensors export: '<model>:<i>:up/down' in fp16, the scale multiplied into up."""
    tensors, meta = {}, {model: json.dumps(list(classes))}
    for i, (_, up, down) in enumerate(pairs):
        tensors[f"{model}:{i}:up"] = (up * scale).half()
        tensors[f"{model}:{i}:down"] = down.half()
        meta[f"{model}:{i}:rank"] = str(down.shape[0])
    save_file(tensors, str(path), metadata=meta)
    return str(path)


def test_targets_are_motiondirectors_layers_in_its_order(tiny_base):
    unet = tiny_base.unet
    targets = motiondirector_targets(unet)
    assert targets == md_order(unet)
    assert sorted(targets) == temporal_targets(unet, include_feed_forward=True)
    assert targets[0].startswith("transformer_in.") and targets[-1].startswith("mid_block.")
    assert [t.rsplit("blocks.0.", 1)[1] for t in targets[:10]] == [
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
        "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"]


@pytest.mark.parametrize("as_parameters", [False, True], ids=["tensors", "parameters"])
def test_pt_import_gives_each_layer_the_delta_of_its_weights(tiny_base, tmp_path, as_parameters):
    pairs = md_pairs(tiny_base.unet)
    path = write_pt(tmp_path / "500_unet.pt", pairs, as_parameters)
    adapter = import_motiondirector(path, tiny_base)
    lora = adapter.temporal
    assert (lora.rank, lora.alpha) == (12, 12.0)  # 8-wide layers were clamped to 8 and are zero-padded
    assert lora.targets == sorted(name for name, _, _ in pairs)
    for name, up, down in pairs:
        assert torch.allclose(lora.delta(name), up @ down, atol=1e-6), name
    assert adapter.training == {"imported_from": "MotionDirector", "file": "500_unet.pt", "format": "pt"}
    assert adapter.kinds == ["temporal"] and adapter.base_fingerprint == tiny_base.fingerprint
    check_adapter_fits(adapter, tiny_base)


def test_safetensors_export_import(tiny_base, tmp_path):
    pairs = md_pairs(tiny_base.unet, rank=4, seed=1)
    path = write_safetensors(tmp_path / "lora.safetensors", pairs, scale=0.7)
    adapter = import_motiondirector(path, tiny_base)
    assert adapter.training["format"] == "safetensors" and adapter.temporal.rank == 4
    for name, up, down in pairs:
        expected = (up * 0.7).half().float() @ down.half().float()
        assert torch.allclose(adapter.temporal.delta(name), expected, atol=1e-6), name


def test_files_for_another_base_are_refused_naming_counts_and_shapes(tiny_base, tmp_path):
    from diffusers import UNet3DConditionModel

    def unet(**kw):
        config = dict(sample_size=8, in_channels=4, out_channels=4, cross_attention_dim=16, attention_head_dim=4,
                      down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), norm_num_groups=4,
                      up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(8, 16),
                      layers_per_block=1)
        return UNet3DConditionModel(**{**config, **kw})

    wider = write_pt(tmp_path / "wider.pt", md_pairs(unet(block_out_channels=(12, 24))))
    # transformer_in is 32 wide in both (8 heads x 4); the first temporal block is 8 here, 12 there.
    with pytest.raises(CavError, match=r"wider.pt was made for another base: layer 10 \(down_blocks\.0\..*attn1\.to_q\) "
                                       r"needs up \[8, r\] and down \[r, 8\], found up \[12, 12\] and down \[12, 12\]"):
        import_motiondirector(wider, tiny_base)
    deeper = write_pt(tmp_path / "deeper.pt", md_pairs(unet(layers_per_block=2)))
    with pytest.raises(CavError, match=r"deeper.pt was made for another base: it holds 70 layers \(140 tensors\), "
                                       r"MotionDirector's temporal LoRA on .* has 50 \(100 tensors\)"):
        import_motiondirector(deeper, tiny_base)


def test_a_base_that_differs_only_in_text_width_has_the_same_temporal_layers(tiny_base, tmp_path):
    """A MotionDirector file names no base: only counts and shapes can be checked. The text width
    (cross_dim) changes no temporal layer, so such a file fits and is imported."""
    from cav_core.base_model import load_base
    from conftest import build_tiny_base_folder

    other = load_base(build_tiny_base_folder(str(tmp_path / "wide_text"), cross_dim=24))
    assert other.fingerprint != tiny_base.fingerprint
    path = write_pt(tmp_path / "text24.pt", md_pairs(other.unet))
    assert import_motiondirector(path, tiny_base).temporal.targets == sorted(motiondirector_targets(tiny_base.unet))


def test_truncated_and_malformed_files_are_refused(tiny_base, tmp_path):
    pairs = md_pairs(tiny_base.unet, rank=2)
    for path in (write_pt(tmp_path / "cut.pt", pairs), write_safetensors(tmp_path / "cut.safetensors", pairs)):
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        with pytest.raises(CavError, match="truncated"):
            import_motiondirector(path, tiny_base)
    odd = tmp_path / "odd.pt"
    torch.save([pairs[0][1]], odd)
    with pytest.raises(CavError, match="1 tensors; a MotionDirector LoRA has an up and a down per layer"):
        import_motiondirector(odd, tiny_base)
    keyed = tmp_path / "keyed.pt"
    torch.save({"up": pairs[0][1]}, keyed)
    with pytest.raises(CavError, match="holds a dict, not a list"):
        import_motiondirector(keyed, tiny_base)
    missing = write_safetensors(tmp_path / "missing.safetensors", pairs[:3])
    from safetensors.torch import load_file
    tensors = load_file(missing)
    del tensors["unet:1:down"]
    save_file(tensors, missing, metadata={"unet": json.dumps(["TransformerTemporalModel"])})
    with pytest.raises(CavError, match="incomplete"):
        import_motiondirector(missing, tiny_base)
    spatial = write_safetensors(tmp_path / "spatial.safetensors", pairs, classes=("Transformer2DModel",))
    with pytest.raises(CavError, match="exactly one MotionDirector temporal LoRA"):
        import_motiondirector(spatial, tiny_base)
    ours = save_adapter_file(tmp_path / "ours.safetensors",
                             AdapterFile(tiny_base.name, tiny_base.fingerprint, temporal=random_lora(tiny_base.unet, 1)))
    with pytest.raises(CavError, match="Customize-A-Video adapter already"):
        import_motiondirector(ours, tiny_base)
    with pytest.raises(CavError, match=r"a .pt file or its .safetensors export"):
        import_motiondirector(tmp_path / "lora.ckpt", tiny_base)
    with pytest.raises(CavError, match="not found"):
        import_motiondirector(tmp_path / "absent.pt", tiny_base)


class _WritesMarker:
    """Unpickling this would create the marker file: proof of code run at load time."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pt_that_needs_code_to_load_is_refused_without_running_it(tiny_base, tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "pickled.pt"
    torch.save([torch.zeros(8, 2), _WritesMarker(marker)], path)
    assert not marker.exists()  # saving did not run it either
    with pytest.raises(CavError, match="needs code to load .* and was not run"):
        import_motiondirector(path, tiny_base)
    assert not marker.exists()
    assert os.listdir(tmp_path) == ["pickled.pt"]


def test_load_motion_file_takes_either_kind_and_sample_uses_a_motiondirector_file(tiny_base, tiny_base_dir,
                                                                                   tmp_path, capsys):
    from cav_core.cli import main
    from cav_core.motiondirector_import import is_motiondirector_file, load_motion_file

    pairs = md_pairs(tiny_base.unet)
    pt, st = write_pt(tmp_path / "md.pt", pairs), write_safetensors(tmp_path / "md.safetensors", pairs)
    ours = save_adapter_file(tmp_path / "ours.safetensors", AdapterFile(
        tiny_base.name, tiny_base.fingerprint, temporal=random_lora(tiny_base.unet, 1)))
    assert is_motiondirector_file(pt) and is_motiondirector_file(st) and not is_motiondirector_file(ours)
    assert load_motion_file(ours).training == {}  # ours needs no base
    with pytest.raises(CavError, match="give the base"):
        load_motion_file(pt)
    assert load_motion_file(pt, tiny_base).training["imported_from"] == "MotionDirector"
    out = tmp_path / "md.gif"
    assert main(["sample", "--base", tiny_base_dir, "--lora", f"{pt}:0.5", "--prompt", "x", "--steps", "1",
                 "--frames", "2", "--out", str(out), "--quiet"]) == 0 and out.exists()
