import json
import os

import pytest
import torch

from cav_core.adapter_file import (AdapterFile, TokenEmbeddings, check_adapter_fits, load_adapter_file,
                                   save_adapter_file)
from cav_core.adapters import applied_loras, tuner_layers
from cav_core.errors import CavError
from cav_core.targeting import temporal_targets
from conftest import random_lora


def _out(unet):
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(1, 4, 4, 8, 8, generator=g), torch.randn(1, 24, 16, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([300]), text).sample


def _state(unet):
    return {k: v.clone() for k, v in unet.state_dict().items()}


@pytest.mark.parametrize("with_convs", [False, True], ids=["attention", "attention+temporal_convs"])
def test_stacking_equals_weighted_sum_of_deltas(tiny_base, with_convs):
    unet = tiny_base.unet
    targets = temporal_targets(unet, include_temporal_convs=with_convs)
    a, b = random_lora(unet, 1, targets=targets), random_lora(unet, 2, targets=targets)
    # Reference: the base with w_a * delta_a + w_b * delta_b added by hand.
    before = _state(unet)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for t in a.targets:
            modules[t].weight += 0.7 * a.delta(t) + -0.4 * b.delta(t)
    expected = _out(unet)
    unet.load_state_dict(before)
    with applied_loras(unet, [(a, 0.7), (b, -0.4)], fuse=False):  # peft layers, both active
        unfused = _out(unet)
    with applied_loras(unet, [(a, 0.7), (b, -0.4)], fuse=True):
        fused = _out(unet)
    assert torch.allclose(unfused, expected, atol=1e-5)
    assert torch.allclose(fused, unfused, atol=1e-5)
    assert not torch.allclose(expected, _out(unet), atol=1e-3)  # the LoRAs did something
    after = unet.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)  # restored bit for bit


def test_save_load_round_trip_exact(tiny_base, tmp_path):
    lora = random_lora(tiny_base.unet, 3)
    ti = TokenEmbeddings(("<cav-ref>",), torch.randn(1, 16))
    adapter = AdapterFile(tiny_base.name, tiny_base.fingerprint, temporal=lora, textual_inversion=ti,
                          training={"steps": 5, "prompt": "a red square"})
    path = save_adapter_file(tmp_path / "m.safetensors", adapter)
    loaded = load_adapter_file(path)
    assert loaded.temporal.tensors.keys() == lora.tensors.keys()
    assert all(torch.equal(loaded.temporal.tensors[k], v) for k, v in lora.tensors.items())
    assert (loaded.temporal.rank, loaded.temporal.alpha) == (2, 2.0)
    assert torch.equal(loaded.textual_inversion.vectors, ti.vectors)
    assert loaded.spatial is None and loaded.training["prompt"] == "a red square"
    info = loaded.describe()
    assert info["kinds"] == ["temporal", "textual_inversion"]
    assert info["base"] == {"name": tiny_base.name, "fingerprint": tiny_base.fingerprint}
    assert info["temporal"]["layers"] == len(lora.targets) and info["created"]
    json.dumps(info)
    check_adapter_fits(loaded, tiny_base)
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temp file left


def test_lora_from_another_base_is_refused_naming_both(tiny_base, tmp_path):
    from cav_core.base_model import load_base
    from conftest import build_tiny_base_folder

    other = load_base(build_tiny_base_folder(str(tmp_path / "wide"), cross_dim=32))
    lora = random_lora(other.unet, 4)
    path = save_adapter_file(tmp_path / "o.safetensors", AdapterFile("wide", other.fingerprint, temporal=lora))
    with pytest.raises(CavError, match=f"trained on base 'wide'.*loaded base is {tiny_base.name}"):
        check_adapter_fits(load_adapter_file(path), tiny_base)
    # Even with a forged fingerprint, shapes are checked before peft sees them (cross-attention
    # projections differ with the text width; temporal ones would not).
    from cav_core.adapters import SPATIAL
    from cav_core.targeting import spatial_targets

    spatial = random_lora(other.unet, 5, role=SPATIAL, targets=spatial_targets(other.unet))
    forged = AdapterFile("x", tiny_base.fingerprint, spatial=spatial)
    with pytest.raises(CavError, match="shapes"):
        check_adapter_fits(forged, tiny_base)


def test_non_adapter_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "image_lora.safetensors")
    with pytest.raises(CavError, match="not a Customize-A-Video adapter"):
        load_adapter_file(tmp_path / "image_lora.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CavError, match="not a readable safetensors"):
        load_adapter_file(tmp_path / "junk.safetensors")
    with pytest.raises(CavError, match="not found"):
        load_adapter_file(tmp_path / "missing.safetensors")


def test_a_conv_lora_of_the_wrong_shape_is_refused_before_peft_sees_it(tiny_base):
    from cav_core.adapters import LoraWeights, check_lora_fits

    unet = tiny_base.unet
    lora = random_lora(unet, 4, targets=temporal_targets(unet, include_temporal_convs=True))
    conv = next(t for t in lora.targets if ".temp_convs." in t)
    check_lora_fits(unet, lora)  # fits as made
    bad = dict(lora.tensors)
    bad[f"{conv}.lora_A.weight"] = torch.zeros(lora.rank, 3, 3, 1, 1)  # wrong input channels
    with pytest.raises(CavError, match=conv.replace(".", r"\.")):
        check_lora_fits(unet, LoraWeights(lora.role, lora.rank, lora.alpha, bad))


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_strength_is_refused_before_the_base_is_touched(tiny_base, strength):

    lora = random_lora(tiny_base.unet, 1)
    before = {k: v.clone() for k, v in tiny_base.unet.state_dict().items()}
    for fuse in (True, False):
        with pytest.raises(CavError, match="finite number"):
            with applied_loras(tiny_base.unet, [(lora, 0.5), (lora, strength)], fuse=fuse):
                pass
    after = tiny_base.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not list(tuner_layers(tiny_base.unet))


@pytest.mark.parametrize("meta", [
    {"training": "{not json"},
    {"temporal": "[1,2"},
    {"format_version": "one"},
    {"temporal": json.dumps({"alpha": 2})},
    {"textual_inversion": json.dumps({"tokens": ["<x>"]})},
    {"training": "[1, 2]"},
    {"temporal": json.dumps({"rank": 2, "alpha": 2}), "drop": "lora_B"},
])
def test_an_adapter_file_with_junk_metadata_is_refused_with_one_message(tmp_path, meta):
    from safetensors.torch import save_file

    from cav_core.adapter_file import FORMAT

    meta = {"format": FORMAT, "format_version": "1", **meta}
    tensors = {"temporal.blk.to_q.lora_A.weight": torch.zeros(2, 4), "temporal.blk.to_q.lora_B.weight": torch.zeros(4, 2)}
    if meta.pop("drop", None):
        del tensors["temporal.blk.to_q.lora_B.weight"]
    path = tmp_path / "junk.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CavError, match="damaged metadata|update the pack"):
        load_adapter_file(path)
