"""selective_checkpointing: a training step's memory is counted before it runs, with fake tensors, as what
a real step keeps; over the target, the blocks that keep the most are recomputed in backward, which keeps
less and gives the very gradients."""
from __future__ import annotations

import contextlib

import pytest
import torch

from cav_core import AbsorberSettings, ComputeSettings, MotionSettings, train_absorber, train_motion
from cav_core.compute import checkpointable_blocks
from cav_core.lean_backward import lean_backward
from cav_core.selective_checkpointing import (checkpointing_to_fit, named_blocks_checkpointed, plan_memory,
                                              saved_for_backward, training_forward)
from conftest import saved_bytes_and_grads, training_motion_lora
from tools.bench.saved_activations import saved_by_module


def _forward(unet, x, text):
    return training_forward(torch.device("cpu"), "no", unet.dtype, tuple(x.shape), tuple(text.shape))


@pytest.mark.parametrize("lean", [True, False])
def test_the_fake_count_is_what_a_real_forward_keeps(tiny_base, lean):
    unet, x, text = training_motion_lora(tiny_base)
    with lean_backward(unet, lean):
        fake = saved_for_backward(unet, _forward(unet, x, text), checkpointable_blocks(unet))
        real = sum(saved_by_module(unet, x, torch.zeros(1, dtype=torch.long), text)[0].values())
    assert fake.total == pytest.approx(real, rel=0.02)
    assert 0 < sum(fake.by_block.values()) < fake.total  # the UNet's own first and last layers are in no block
    assert all(v > 0 for v in fake.inputs.values())
    assert all("forward" not in m.__dict__ for m in checkpointable_blocks(unet))


def test_over_the_target_the_blocks_that_keep_the_most_are_recomputed_until_it_fits(tiny_base):
    unet, x, text = training_motion_lora(tiny_base)
    forward = _forward(unet, x, text)
    roomy = plan_memory(unet, forward, 2 ** 40)
    assert roomy.blocks == () and roomy.estimate == roomy.without
    assert "nothing is recomputed" in roomy.describe()
    saved = saved_for_backward(unet, forward, checkpointable_blocks(unet))
    names = {m: name for name, m in unet.named_modules()}
    gains = {names[b]: saved.by_block[b] - saved.inputs[b] for b in checkpointable_blocks(unet)}
    nothing_fits = plan_memory(unet, forward, 1)
    assert {name for name, _ in nothing_fits.blocks} == {n for n, g in gains.items() if g > 0}
    assert nothing_fits.estimate < nothing_fits.without and "still above" in nothing_fits.describe()
    one = plan_memory(unet, forward, nothing_fits.without - 1)  # just over: the block that gains most is enough
    assert [name for name, _ in one.blocks] == [max(gains, key=gains.get)]
    assert one.estimate <= one.target < one.without and "within the target" in one.describe()
    two = plan_memory(unet, forward, one.estimate - 1)
    assert [name for name, _ in two.blocks][:1] == [name for name, _ in one.blocks] and len(two.blocks) >= 2


def test_recomputed_blocks_keep_less_for_the_very_gradients(tiny_base):
    unet, x, text = training_motion_lora(tiny_base)
    kept, grads = saved_bytes_and_grads(unet, x, text, contextlib.nullcontext())
    plan = plan_memory(unet, _forward(unet, x, text), 1)
    for names in ([plan.blocks[0][0]], [name for name, _ in plan.blocks]):
        kept_recomputing, grads_recomputing = saved_bytes_and_grads(unet, x, text,
                                                                    named_blocks_checkpointed(unet, names))
        assert kept_recomputing < kept
        torch.testing.assert_close(grads_recomputing, grads, rtol=0, atol=0)
    assert all("forward" not in m.__dict__ for m in unet.modules())


def test_no_plan_without_a_target_or_where_every_block_is_recomputed(tiny_base):
    unet = tiny_base.unet
    for compute in [ComputeSettings(device="cpu", memory_target_gib=None),
                    ComputeSettings(device="cpu", gradient_checkpointing=True, memory_target_gib=1e-9)]:
        with checkpointing_to_fit(unet, compute, (1, 4, 6, 2, 2), (1, 4, 16)) as plan:
            assert plan is None
            assert all("forward" not in m.__dict__ for m in unet.modules())


def test_training_under_a_tight_target_recomputes_and_learns_the_same(tiny_base, clip_frames):
    settings = MotionSettings(prompt="a red square moving", steps=3, seed=0)
    free = train_motion(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu", memory_target_gib=None))
    tight = train_motion(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu", memory_target_gib=1e-9))
    roomy = train_motion(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu"))
    assert free.memory_plan is None
    assert len(tight.memory_plan.blocks) > 1 and roomy.memory_plan.blocks == ()
    for trained in (tight, roomy):
        assert trained.losses == free.losses
        for name, tensor in free.lora.tensors.items():
            torch.testing.assert_close(trained.lora.tensors[name], tensor, rtol=0, atol=0)
    assert all("forward" not in m.__dict__ for m in tiny_base.unet.modules())


def test_the_absorber_trains_the_same_under_a_tight_target(tiny_base, clip_frames):
    settings = AbsorberSettings(kind="dual", prompt="a red square", steps=2, batch=2)
    free = train_absorber(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu", memory_target_gib=None))
    tight = train_absorber(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu", memory_target_gib=1e-9))
    assert tight.losses == free.losses
    assert free.memory_plan is None and len(tight.memory_plan.blocks) > 1  # the plan comes back with the absorber
    for name, tensor in free.spatial.tensors.items():
        torch.testing.assert_close(tight.spatial.tensors[name], tensor, rtol=0, atol=0)


def test_a_forward_fake_tensors_cannot_run_trains_as_without_a_target_and_says_why(tiny_base, clip_frames,
                                                                                   monkeypatch):
    block = tiny_base.unet.down_blocks[0]
    original = block.forward

    def data_dependent(*args, **kwargs):
        float(next(t for t in (*args, *kwargs.values()) if torch.is_tensor(t)).detach().abs().max())  # no value when fake
        return original(*args, **kwargs)

    monkeypatch.setattr(block, "forward", data_dependent)
    settings = MotionSettings(prompt="a red square moving", steps=2, seed=0)
    trained = train_motion(tiny_base, clip_frames, settings, compute=ComputeSettings(device="cpu", memory_target_gib=1e-9))
    plan = trained.memory_plan
    assert plan.blocks == () and plan.worth_telling and "could not be estimated" in plan.describe()
    assert len(trained.losses) == 2
