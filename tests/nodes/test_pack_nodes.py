"""Node classes executed in-process against ComfyUI's comfy_api / model management (--cpu).

Skipped with a reason when COMFYUI_PATH is not set. Runs on the tiny random-init base.
"""
from __future__ import annotations

import asyncio
import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from cav_core.video_io import read_video

from .cav_test_helpers import TINY, TOY_MODEL_DIR, run

REFERENCE = dict(video="zigzag.mp4 [bundled]", max_frames=8, skip_first=0, every_nth=1, target_fps=0.0,
                 width=16, height=16)
ABSORBER = dict(kind="dual", appearance_prompt="a red square", steps=2, lr=1e-3, ti_lr=5e-3, rank=2,
                crop_min=0.33, crop_max=0.67, seed=0)
MOTION = dict(prompt="a red square moving", steps=2, lr=1e-3, rank=2, seed=0, name="zigzag", save=False,
              preview_every=1, loss="mse", include_transformer_in="on", include_feed_forward="off",
              include_temporal_convs="off", absorber_token_in_prompt="on")
SAMPLE = dict(prompt="a blue circle", negative="", seed=3, steps=2, cfg=5.0, frames=5, width=16, height=12,
              scheduler="ddim", fps=8.0, noise_prior=0.0)


@pytest.fixture()
def chain(nodes):
    base = run(nodes["CAV_LoadBase"], model=TINY, precision="auto").result[0]
    frames = run(nodes["CAV_LoadReferenceVideo"], **REFERENCE).result[0]
    return base, frames


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_entrypoint_is_v3_only_with_every_node(pack, comfy):
    assert pack.WEB_DIRECTORY == "./js" and not hasattr(pack, "NODE_CLASS_MAPPINGS")
    extension = asyncio.run(pack.comfy_entrypoint())
    node_list = asyncio.run(extension.get_node_list())
    schemas = [cls.GET_SCHEMA() for cls in node_list]
    assert len({s.node_id for s in schemas}) == len(schemas) == 14
    assert [s.node_id for s in schemas if s.is_deprecated] == ["CAV_TrainMotionLora", "CAV_MotionLoraStack"]
    for schema in schemas:
        assert schema.node_id.startswith("CAV_") and schema.category == "Customize-A-Video"
        assert schema.display_name.endswith("(Customize-A-Video)") and schema.description
        for item in [*schema.inputs, *schema.outputs]:
            assert item.tooltip, f"{schema.node_id}.{item.id or item.display_name} has no tooltip"
    assert "cav_motion_loras" in comfy.folder_paths.folder_names_and_paths


def test_one_shot_chain_trains_saves_loads_and_samples(nodes, chain, host_dirs, comfy):
    base, frames = chain
    assert frames.shape == (8, 16, 16, 3)
    weights_before = state(base.base.unet)
    absorber, absorber_graph = run(nodes["CAV_TrainAbsorber"], base=base, reference=frames, **ABSORBER).result
    assert absorber.kind == "dual" and absorber_graph.shape == (1, 256, 512, 3)
    motion, _, saved = run(nodes["CAV_TrainMotion"], base=base, reference=frames, absorber=absorber,
                               **{**MOTION, "save": True, "name": "../zig zag"}).result
    assert saved == "zig zag.safetensors"
    assert sorted(os.listdir(host_dirs.loras)) == [saved, "zig zag.webp"]  # its preview: the reference
    assert read_video(os.path.join(host_dirs.loras, "zig zag.webp")).frames.shape == (8, 96, 96, 3)
    assert motion.adapter.kinds == ["temporal", "spatial", "textual_inversion"]
    comfy.folder_paths.filename_list_cache.clear()
    stack, from_file = run(nodes["CAV_LoadMotionLora"], lora_name=saved, strength=0.7).result
    assert torch.equal(from_file.temporal.tensors[next(iter(motion.temporal.tensors))],
                       next(iter(motion.temporal.tensors.values())))
    stack2 = run(nodes["CAV_MotionLoraStack"], motion_lora_1=motion, strength_1=0.3, strength_2=1.0,
                 strength_3=1.0, stack=stack).result[0]
    assert [e.strength for e in stack.entries] == [0.7] and [e.strength for e in stack2.entries] == [0.7, 0.3]
    appearance = run(nodes["CAV_ApplyAppearance"], use_slora=True, use_textual_inversion=True, strength=1.0,
                     motion_lora=from_file).result[0]
    out = run(nodes["CAV_SampleVideo"], base=base, motion_loras=stack2, appearance=appearance, **SAMPLE)
    images, fps, video = out.result
    assert images.shape == (5, 12, 16, 3) and images.device == comfy.mm.intermediate_device()
    assert fps == 8.0 and video.get_dimensions() == (16, 12)
    assert video.get_components().frame_rate == Fraction(8)
    after = state(base.base.unet)
    assert all(torch.equal(weights_before[k], after[k]) for k in weights_before)  # no traces on the shared base


def test_motion_node_can_adapt_the_temporal_convolutions(nodes, chain):
    base, frames = chain
    motion = run(nodes["CAV_TrainMotion"], base=base, reference=frames,
                 **{**MOTION, "include_temporal_convs": "on"}).result[0]
    assert any(".temp_convs." in t for t in motion.temporal.targets)
    assert motion.adapter.training["include_temporal_convs"] is True
    stack = run(nodes["CAV_MotionLoraStack"], motion_lora_1=motion, strength_1=1.0, strength_2=1.0,
                strength_3=1.0).result[0]
    images = run(nodes["CAV_SampleVideo"], base=base, motion_loras=stack, **SAMPLE).result[0]
    assert images.shape == (5, 12, 16, 3)


def test_motion_node_can_leave_the_absorbers_token_out_of_its_caption(nodes, chain):
    base, frames = chain
    absorber = run(nodes["CAV_TrainAbsorber"], base=base, reference=frames, **ABSORBER).result[0]
    losses = {}
    for token in (True, False):
        motion = run(nodes["CAV_TrainMotion"], base=base, reference=frames, absorber=absorber,
                     **{**MOTION, "absorber_token_in_prompt": "on" if token else "off"}).result[0]
        assert motion.adapter.training["absorber_token_in_prompt"] is token
        recorded = motion.adapter.training["absorber"]  # the absorber node's settings, carried through
        assert (recorded["kind"], recorded["rank"], recorded["crop_range"]) == ("dual", 2, [0.33, 0.67])
        assert recorded["tokens"] == list(absorber.absorber.tokens)
        assert motion.adapter.textual_inversion is not None  # kept either way
        losses[token] = motion.losses["motion"]
    assert losses[True] != losses[False]  # the caption, so the conditioning, differs


AUTO_MOTION = {**MOTION, "steps": 0, "lr": 0.0, "rank": 0, "loss": "auto", "include_transformer_in": "auto",
               "include_feed_forward": "auto", "include_temporal_convs": "auto", "absorber_token_in_prompt": "auto"}


def test_auto_settings_are_the_bases_recipe_and_explicit_values_win(nodes, comfy):
    """On auto, the motion node trains with the base's recipe (the bundled base's own file)."""
    toy = run(nodes["CAV_LoadBase"], model="shapes_world (bundled)", precision="auto")
    assert "recipe 'shapes_world'" in toy.ui.value
    toy = toy.result[0]
    train = nodes["CAV_TrainMotion"]
    keys = ("prompt", "steps", "lr", "rank", "seed", "loss", "include_transformer_in", "include_feed_forward",
            "include_temporal_convs", "absorber_token_in_prompt")
    auto = train.settings(toy, **{k: AUTO_MOTION[k] for k in keys})
    recipe = toy.base.recipe.motion_settings(prompt=MOTION["prompt"])
    assert auto == recipe  # its steps, lr and the rest: the values themselves are tests/test_recipe.py's
    assert (auto.rank, auto.include_temporal_convs, auto.absorber_token_in_prompt, auto.min_timestep) == (
        16, True, False, 700)
    explicit = train.settings(toy, **{k: AUTO_MOTION[k] for k in keys} | {"rank": 3, "include_temporal_convs": "off"})
    assert (explicit.rank, explicit.include_temporal_convs, explicit.steps, explicit.lr) == (3, False, recipe.steps,
                                                                                              recipe.lr)
    for every_timestep_or_from in (0, 700):  # 0 is a setting of its own (all timesteps), not auto
        chosen = train.settings(toy, **{k: AUTO_MOTION[k] for k in keys}, min_timestep=every_timestep_or_from)
        assert chosen.min_timestep == every_timestep_or_from
    # A base without a recipe file trains with the paper's settings.
    tiny = run(nodes["CAV_LoadBase"], model=TINY, precision="auto").result[0]
    paper = train.settings(tiny, **{k: AUTO_MOTION[k] for k in keys})
    assert (paper.steps, paper.rank, paper.include_temporal_convs, paper.absorber_token_in_prompt) == (300, 4, False, True)
    assert paper.min_timestep == 0
    absorber = nodes["CAV_TrainAbsorber"]
    frames = run(nodes["CAV_LoadReferenceVideo"], **{**REFERENCE, "max_frames": 0, "width": 0, "height": 0},
                 base=toy).result[0]
    assert frames.shape == (16, 64, 64, 3)  # the recipe's frame count and size
    out = run(absorber, base=toy, reference=frames, **{**ABSORBER, "kind": "auto", "steps": 1, "lr": 0.0,
                                                       "ti_lr": 0.0, "rank": 0, "crop_min": 0.0, "crop_max": 0.0})
    assert out.result[0].kind == "dual" and out.result[0].settings.crop_range == (0.33, 0.67)
    assert "shapes_world recipe" in out.ui.value


def test_the_deprecated_motion_node_trains_what_its_saved_booleans_say(nodes, chain):
    base, frames = chain
    old = run(nodes["CAV_TrainMotionLora"], base=base, reference=frames,
              **{**MOTION, "include_temporal_convs": True, "include_transformer_in": True,
                 "include_feed_forward": False, "absorber_token_in_prompt": False}).result[0]
    new = run(nodes["CAV_TrainMotion"], base=base, reference=frames,
              **{**MOTION, "include_temporal_convs": "on", "absorber_token_in_prompt": "off"}).result[0]
    assert old.temporal.targets == new.temporal.targets and any(".temp_convs." in t for t in old.temporal.targets)
    assert all(torch.equal(old.temporal.tensors[k], new.temporal.tensors[k]) for k in new.temporal.tensors)
    assert old.adapter.training["absorber_token_in_prompt"] is False


def test_training_nodes_can_checkpoint_gradients(nodes, chain):
    """The low-memory switch reaches the engine and trains the same LoRA (recomputation only)."""
    base, frames = chain
    absorbers = {c: run(nodes["CAV_TrainAbsorber"], base=base, reference=frames, **ABSORBER,
                        gradient_checkpointing=c).result[0] for c in (False, True)}
    assert np.allclose(absorbers[True].absorber.losses, absorbers[False].absorber.losses, atol=1e-5)
    motions = {c: run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION,
                      gradient_checkpointing=c).result[0] for c in (False, True)}
    assert motions[True].adapter.training["gradient_checkpointing"] is True
    assert motions[False].adapter.training["gradient_checkpointing"] is False
    assert np.allclose(motions[True].losses["motion"], motions[False].losses["motion"], atol=1e-5)


def test_training_nodes_fit_a_memory_target(nodes, chain, comfy):
    """0 (auto) aims at what ComfyUI counts free on the device, where the tiny base's steps fit:
    nothing recomputed, nothing said. A target below a step's estimate recomputes blocks, the node's
    text says so, and the training is the same."""
    from cav_pack.nodes import host

    base, frames = chain
    cpu = torch.device("cpu")
    unet_gib = sum(p.numel() * p.element_size() for p in base.base.unet.parameters()) / 2 ** 30
    reserve_gib = comfy.mm.minimum_inference_memory() / 2 ** 30
    expected = comfy.mm.get_free_memory(cpu) / 2 ** 30 + unet_gib - reserve_gib
    assert abs(host.training_memory_target(base, cpu) - expected) < 0.25  # free memory moves meanwhile

    said = "UNet blocks that keep the most are recomputed in backward"
    absorbers = {target: run(nodes["CAV_TrainAbsorber"], base=base, reference=frames, **ABSORBER,
                             memory_target_gib=target) for target in (0.0, 1e-4)}
    assert said not in absorbers[0.0].ui.value and said in absorbers[1e-4].ui.value
    assert absorbers[0.0].result[0].absorber.memory_plan.blocks == ()
    assert np.allclose(absorbers[1e-4].result[0].absorber.losses, absorbers[0.0].result[0].absorber.losses,
                       atol=1e-5)
    motions = {target: run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION,
                           memory_target_gib=target) for target in (0.0, 1e-4)}
    assert said not in motions[0.0].ui["text"][0] and said in motions[1e-4].ui["text"][0]
    assert np.allclose(motions[1e-4].result[0].losses["motion"], motions[0.0].result[0].losses["motion"], atol=1e-5)


def test_merge_node_reproduces_the_stack_and_saves_one_file(nodes, chain, host_dirs, comfy):
    base, frames = chain
    a = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION).result[0]
    b = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "seed": 1, "lr": 5e-2}).result[0]
    stack = run(nodes["CAV_MotionLoraStack"], motion_lora_1=a, strength_1=0.6, motion_lora_2=b, strength_2=-0.4,
                strength_3=1.0).result[0]
    out = run(nodes["CAV_MergeMotionLoras"], stack=stack, name="mix", max_rank=0, save=True)
    merged, saved = out.result
    assert saved == "mix.safetensors" and "exact" in out.ui.value
    assert sorted(os.listdir(host_dirs.loras)) == [saved, "mix.webp"]
    # both trained references (no validation), side by side
    assert read_video(os.path.join(host_dirs.loras, "mix.webp")).frames.shape == (8, 96, 96 + 2 + 96, 3)
    assert merged.temporal.rank == a.temporal.rank + b.temporal.rank
    assert [s["weight"] for s in merged.adapter.training["merged_from"]] == [0.6, -0.4]
    one = run(nodes["CAV_MotionLoraStack"], motion_lora_1=merged, strength_1=1.0, strength_2=1.0,
              strength_3=1.0).result[0]
    with_stack = run(nodes["CAV_SampleVideo"], base=base, motion_loras=stack, **SAMPLE).result[0]
    with_merged = run(nodes["CAV_SampleVideo"], base=base, motion_loras=one, **SAMPLE).result[0]
    assert torch.allclose(with_stack, with_merged, atol=1e-4)
    cut = run(nodes["CAV_MergeMotionLoras"], stack=stack, name="mix", max_rank=1, save=False)
    assert cut.result[0].temporal.rank == 1 and "relative error" in cut.ui.value and cut.result[1] == ""


def test_loader_converts_a_motiondirector_file_for_the_connected_base(nodes, chain, host_dirs, comfy):
    base, _ = chain
    unet = base.base.unet
    modules = dict(unet.named_modules())
    from cav_core.motiondirector_import import motiondirector_targets

    g = torch.Generator().manual_seed(0)
    tensors = []
    for name in motiondirector_targets(unet):  # MotionDirector's .pt: [up_0, down_0, up_1, ...]
        layer = modules[name]
        tensors += [torch.randn(layer.out_features, 2, generator=g), torch.randn(2, layer.in_features, generator=g)]
    torch.save(tensors, os.path.join(host_dirs.loras, "md_motion.pt"))
    comfy.folder_paths.filename_list_cache.clear()
    with pytest.raises(Exception, match="MotionDirector LoRA.*give the base"):
        run(nodes["CAV_LoadMotionLora"], lora_name="md_motion.pt", strength=1.0)
    stack, motion = run(nodes["CAV_LoadMotionLora"], lora_name="md_motion.pt", strength=0.5, base=base).result
    assert motion.adapter.training["imported_from"] == "MotionDirector" and stack.entries[0].strength == 0.5
    images = run(nodes["CAV_SampleVideo"], base=base, motion_loras=stack, **SAMPLE).result[0]
    assert images.shape == (5, 12, 16, 3)


def test_bad_strengths_and_names_are_refused_with_a_message(nodes, chain, host_dirs):
    base, frames = chain
    motion = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION).result[0]
    with pytest.raises(Exception, match="finite number"):
        run(nodes["CAV_MotionLoraStack"], motion_lora_1=motion, strength_1=float("nan"), strength_2=1.0,
            strength_3=1.0)
    with pytest.raises(Exception, match="too long"):
        run(nodes["CAV_SaveMotionLora"], motion_lora=motion, name="x" * 300, overwrite=False)
    assert os.listdir(host_dirs.loras) == []


def test_motion_node_trains_on_several_clips_and_keeps_training_a_saved_lora(nodes, chain, host_dirs, comfy):
    base, frames = chain
    other = run(nodes["CAV_LoadReferenceVideo"], **{**REFERENCE, "video": "figure_eight.mp4 [bundled]",
                                                     "max_frames": 5, "width": 32, "height": 16}).result[0]
    clips = run(nodes["CAV_AddTrainingClip"], frames=other, caption="a blue circle moving").result[0]
    absorber = run(nodes["CAV_TrainAbsorber"], base=base, reference=frames, more_clips=clips, **ABSORBER).result[0]
    first = run(nodes["CAV_TrainMotion"], base=base, reference=frames, absorber=absorber, more_clips=clips,
                **{**MOTION, "save": True, "name": "two_clips"}).result[0]
    record = first.adapter.training
    assert [c["caption"] for c in record["clips"]] == ["a red square moving", "a blue circle moving"]
    assert [c["frames"] for c in record["clips"]] == [8, 5]  # as they came; trained at the first clip's size
    with pytest.raises(Exception, match="has no caption"):
        run(nodes["CAV_AddTrainingClip"], frames=other, caption="  ")
    # Keep training the saved file: rank and layers from it, steps added up, its absorber reused.
    comfy.folder_paths.filename_list_cache.clear()
    saved = run(nodes["CAV_LoadMotionLora"], lora_name="two_clips.safetensors", strength=1.0).result[1]
    more = run(nodes["CAV_TrainMotion"], base=base, reference=frames, init_lora=saved,
               **{**MOTION, "steps": 3, "rank": 0, "include_temporal_convs": "auto"})
    continued = more.result[0]
    assert continued.adapter.training["total_steps"] == 2 + 3
    assert continued.adapter.training["continued_from"]["file"] == "two_clips"
    assert continued.temporal.rank == first.temporal.rank and continued.adapter.spatial is not None
    assert "continued from two_clips" in more.ui["text"][0]


def test_motion_node_shows_validation_samples_and_saves_the_last_as_preview(nodes, chain, host_dirs):
    base, frames = chain
    out = run(nodes["CAV_TrainMotion"], base=base, reference=frames, validate_every=1,
              validation_prompts="a blue circle moving\n\na green square moving",
              **{**MOTION, "save": True, "name": "validated"})
    assert out.ui["animated"] == (True,) and len(out.ui["images"]) == 1
    assert sorted(os.listdir(host_dirs.loras)) == ["validated.safetensors", "validated.webp"]
    preview = read_video(os.path.join(host_dirs.loras, "validated.webp")).frames
    assert preview.shape == (8, 12 + 96, 96 + 2 + 96, 3)  # labels; the reference beside the last sample


def test_an_interrupted_node_training_resumes_from_its_checkpoint(nodes, chain, comfy, host_dirs, monkeypatch):
    from cav_pack.nodes import host, train

    base, frames = chain
    monkeypatch.setattr(train, "CHECKPOINT_EVERY", 1)
    full = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "steps": 4}).result[0]
    calls = []

    def stop_after_two_steps() -> bool:
        calls.append(1)
        return len(calls) > 2

    monkeypatch.setattr(host, "should_stop", stop_after_two_steps)
    with pytest.raises(Exception):
        run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "steps": 4})
    assert len(os.listdir(os.path.join(host_dirs.loras, ".checkpoints"))) == 1
    monkeypatch.setattr(host, "should_stop", lambda: False)
    resumed = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "steps": 4}).result[0]
    assert all(torch.equal(full.temporal.tensors[k], resumed.temporal.tensors[k]) for k in full.temporal.tensors)
    assert os.listdir(os.path.join(host_dirs.loras, ".checkpoints")) == []


def loaded(comfy, patcher) -> bool:
    """Whether ComfyUI's model management holds ``patcher`` as a loaded model."""
    return any(m.model is patcher for m in comfy.mm.current_loaded_models)


def test_sampling_goes_through_model_management(nodes, chain, comfy):
    base, _ = chain
    run(nodes["CAV_SampleVideo"], base=base, **SAMPLE)
    assert loaded(comfy, base.patcher)
    comfy.mm.free_memory(1e30, comfy.mm.get_torch_device())  # what another model's load does
    assert not loaded(comfy, base.patcher)
    assert next(base.base.unet.parameters()).device == base.patcher.offload_device
    run(nodes["CAV_SampleVideo"], base=base, **SAMPLE)
    assert loaded(comfy, base.patcher)


def test_training_evicts_other_models_and_sampling_keeps_them_when_there_is_room(nodes, chain, comfy):
    """ComfyUI's load_models_gpu frees memory on every load device except torch.device('cpu'); in
    --cpu mode it never evicts. ``cpu:0`` is a device ComfyUI treats as a separate accelerator (its
    free memory is the machine's RAM), so the real eviction path runs here as it would on a GPU."""
    from comfy.model_patcher import ModelPatcher

    base, frames = chain
    device = torch.device("cpu", 0)
    other = ModelPatcher(torch.nn.Linear(64, 64), load_device=device, offload_device=torch.device("cpu"))
    try:
        base.patcher.load_device = device
        comfy.mm.load_models_gpu([other])
        assert loaded(comfy, other)
        run(nodes["CAV_SampleVideo"], base=base, **SAMPLE)  # needs far less than the free RAM
        assert loaded(comfy, base.patcher) and loaded(comfy, other)
        run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION)  # asks for everything
        assert loaded(comfy, base.patcher) and not loaded(comfy, other)
        assert all(p.device == torch.device("cpu") for p in other.model.parameters())
    finally:
        comfy.mm.free_memory(1e30, device)
        base.patcher.load_device = comfy.mm.get_torch_device()


def test_interrupt_becomes_comfy_interrupt_and_writes_nothing(nodes, chain, comfy, host_dirs):
    base, frames = chain
    comfy.mm.interrupt_current_processing(True)
    with pytest.raises(comfy.mm.InterruptProcessingException):
        run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "save": True})
    assert os.listdir(host_dirs.loras) == []
    assert not comfy.mm.processing_interrupted()  # cleared, the next prompt is not interrupted
    assert not any(hasattr(m, "lora_A") for m in base.base.unet.modules())  # base left clean
    run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "save": True})
    assert sorted(os.listdir(host_dirs.loras)) == ["zigzag.safetensors", "zigzag.webp"]


def test_a_step_out_of_device_memory_is_comfys_oom_saying_what_to_change(nodes, chain, comfy, host_dirs,
                                                                        monkeypatch):
    """ComfyUI unloads every model on its out-of-memory error; the message names the node's input to change."""
    base, frames = chain

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:  # host_dirs' own patches stay
        patch.setattr(base.base.unet, "forward", out_of_memory)
        with pytest.raises(comfy.mm.OOM_EXCEPTION, match="motion training ran out of memory on cpu at step 1/2 .*"
                           "`memory_target_gib`"):
            run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "save": True})
    assert os.listdir(host_dirs.loras) == []
    assert not any(hasattr(m, "lora_A") for m in base.base.unet.modules())  # base left clean
    run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "save": True})
    assert sorted(os.listdir(host_dirs.loras)) == ["zigzag.safetensors", "zigzag.webp"]


def test_engine_errors_are_plain_node_errors_with_the_message(nodes, chain):
    base, frames = chain
    with pytest.raises(Exception, match="the motion prompt is empty") as caught:
        run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "prompt": "  "})
    assert type(caught.value) is Exception
    with pytest.raises(Exception, match="multiples of 4"):
        run(nodes["CAV_SampleVideo"], base=base, **{**SAMPLE, "width": 18})
    if not os.path.isdir(TOY_MODEL_DIR):
        with pytest.raises(Exception, match="bundled shapes-world model is not in this install"):
            run(nodes["CAV_LoadBase"], model="shapes_world (bundled)", precision="fp32")


def test_lora_of_another_base_is_refused(nodes, chain):
    from cav_pack.nodes.values import MotionLora, MotionLoraStack

    from cav_core.adapter_file import AdapterFile

    base, _ = chain
    other = MotionLora("other", AdapterFile("ms-1.7b", "0" * 16, temporal=_tiny_lora()))
    with pytest.raises(Exception, match="trained on base 'ms-1.7b'"):
        run(nodes["CAV_SampleVideo"], base=base, motion_loras=MotionLoraStack().plus(other, 1.0), **SAMPLE)


def _tiny_lora():
    from cav_core.adapters import TEMPORAL, LoraWeights

    return LoraWeights(TEMPORAL, 1, 1.0, {"x.lora_A.weight": torch.zeros(1, 2), "x.lora_B.weight": torch.zeros(2, 1)})


def test_reference_from_images_video_and_file_options(nodes, host_dirs):
    from cav_pack.nodes.paths import bundled_references
    from comfy_api.latest import InputImpl, Types

    load = nodes["CAV_LoadReferenceVideo"]
    frames, fps, count = run(load, **{**REFERENCE, "every_nth": 2, "max_frames": 0}).result
    assert count == 8 and fps == 4.0 and frames.shape == (8, 16, 16, 3)
    images = torch.rand(10, 20, 24, 3)
    frames, fps, count = run(load, **{**REFERENCE, "width": 0, "height": 0, "max_frames": 4}, images=images,
                             images_fps=12.0).result
    assert frames.shape == (4, 20, 24, 3) and fps == 12.0
    assert torch.allclose(frames, (images[:4] * 255).round() / 255)
    from_file = InputImpl.VideoFromFile(bundled_references()["figure_eight.mp4 [bundled]"])
    frames, fps, _ = run(load, **REFERENCE, video_input=from_file, images=images).result  # VIDEO wins
    assert frames.shape == (8, 16, 16, 3) and fps == 8.0
    components = InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=None, frame_rate=Fraction(5)))
    frames, fps, _ = run(load, **REFERENCE, video_input=components).result
    assert frames.shape == (8, 16, 16, 3) and fps == 5.0
    with pytest.raises(Exception, match="set both width and height"):
        run(load, **{**REFERENCE, "height": 0})


def test_reference_validation_and_fingerprint(nodes, host_dirs):
    load = nodes["CAV_LoadReferenceVideo"]
    assert load.validate_inputs(video="zigzag.mp4 [bundled]") is True
    assert "outside" in load.validate_inputs(video="../../etc/passwd")
    assert "not found" in load.validate_inputs(video="nope.mp4")
    clip = os.path.join(host_dirs.input, "clip.gif")
    np_frames = (np.random.default_rng(0).random((4, 8, 8, 3)) * 255).astype(np.uint8)
    from cav_core.video_io import write_video

    write_video(clip, np_frames, 4.0)
    first = load.fingerprint_inputs(video="clip.gif")
    os.utime(clip, (1, 1))
    assert load.fingerprint_inputs(video="clip.gif") != first
    assert "clip.gif" in load.GET_SCHEMA().inputs[0].options


def test_save_node_sanitizes_and_numbers_names(nodes, chain, host_dirs):
    base, frames = chain
    motion = run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "steps": 1}).result[0]
    save = nodes["CAV_SaveMotionLora"]
    assert run(save, motion_lora=motion, name="../../a/b", overwrite=False).result[0] == "b.safetensors"
    assert run(save, motion_lora=motion, name="b", overwrite=False).result[0] == "b_00001.safetensors"
    assert run(save, motion_lora=motion, name="b.safetensors", overwrite=True).result[0] == "b.safetensors"
    assert sorted(os.listdir(host_dirs.loras)) == ["b.safetensors", "b.webp", "b_00001.safetensors", "b_00001.webp"]
    info = run(nodes["CAV_InspectMotionLora"], motion_lora=motion).result[0]
    assert '"kinds": [\n  "temporal"\n ]' in info and '"prompt": "a red square moving"' in info


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_base_samples_on_the_cpu_and_refuses_to_train_there(nodes, precision, dtype):
    """The precision input reaches the modules: a half-precision base samples finite frames (outputs
    come back as fp32 IMAGE), and training half weights off CUDA is refused with the fix in the
    message. (Memory and speed on a GPU are not measured here.)"""
    base = run(nodes["CAV_LoadBase"], model=TINY, precision=precision).result[0]
    assert {p.dtype for p in base.base.unet.parameters()} == {dtype}
    assert next(base.base.vae.parameters()).dtype == dtype
    images = run(nodes["CAV_SampleVideo"], base=base, **SAMPLE).result[0]
    assert images.shape == (5, 12, 16, 3) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and images.std() > 0
    frames = run(nodes["CAV_LoadReferenceVideo"], **REFERENCE).result[0]
    with pytest.raises(Exception, match="load the base with precision fp32"):
        run(nodes["CAV_TrainMotion"], base=base, reference=frames, **MOTION)


def test_auto_precision_is_comfyuis_choice_for_each_module(nodes, comfy, monkeypatch):
    """'auto' asks comfy.model_management (which applies --fp32-unet, --bf16-vae ... and the
    device's support): here as a GPU host with a bf16 UNet and an fp32 VAE would answer."""
    asked = {}

    def unet_dtype(device=None, supported_dtypes=(), **kwargs):
        asked["unet"] = (device, list(supported_dtypes))
        return torch.bfloat16

    monkeypatch.setattr(comfy.mm, "unet_dtype", unet_dtype)
    monkeypatch.setattr(comfy.mm, "vae_dtype", lambda device=None, allowed_dtypes=(), **kw: torch.float32)
    base = run(nodes["CAV_LoadBase"], model=TINY, precision="auto").result[0]
    assert {p.dtype for p in base.base.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in base.base.text_encoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in base.base.vae.parameters()} == {torch.float32}
    assert asked["unet"][0] == comfy.mm.get_torch_device() and torch.float32 in asked["unet"][1]


def test_save_keeps_a_loaded_files_preview_and_a_file_without_one_leaves_none(nodes, chain, host_dirs, comfy):
    base, frames = chain
    run(nodes["CAV_TrainMotion"], base=base, reference=frames, **{**MOTION, "save": True, "name": "first"})
    comfy.folder_paths.filename_list_cache.clear()
    loaded = run(nodes["CAV_LoadMotionLora"], lora_name="first.safetensors", strength=1.0).result[1]
    assert run(nodes["CAV_SaveMotionLora"], motion_lora=loaded, name="again", overwrite=False).result[0] == \
        "again.safetensors"
    folder = host_dirs.loras
    with open(os.path.join(folder, "first.webp"), "rb") as a, open(os.path.join(folder, "again.webp"), "rb") as b:
        assert a.read() == b.read()  # carried along byte for byte
    os.remove(os.path.join(folder, "first.webp"))
    comfy.folder_paths.filename_list_cache.clear()
    bare = run(nodes["CAV_LoadMotionLora"], lora_name="first.safetensors", strength=1.0).result[1]
    assert bare.preview is None
    run(nodes["CAV_SaveMotionLora"], motion_lora=bare, name="again", overwrite=True)
    assert sorted(os.listdir(folder)) == ["again.safetensors", "first.safetensors"]  # no stale preview left
