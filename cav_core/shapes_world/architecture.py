"""Configurations of the bundled shapes-world text-to-video model.

The same diffusers classes as ModelScope T2V (UNet3DConditionModel, AutoencoderKL, CLIPTextModel,
CLIPTokenizer), only tiny, so the whole pack runs on a laptop CPU.
"""
from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .scenes import vocabulary_words

PIXELS = 64  # frame side in pixels
FRAMES = 16
LATENT_DOWNSCALE = 4
TOKEN_LENGTH = 24  # the captions' grammar never needs more
TEXT_DIM = 64

_SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def build_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary is the shapes-world words plus every byte char.

    Each word is built by merges from its end: (char, suffix</w>) -> longer suffix</w>. BPE applies
    the lowest-ranked pair first, so merges that build prefixes let one word's prefix fire inside
    another word ("an" inside "orange" and "triangle" split them into four and six tokens). A
    right-hand side that ends in </w> can only match at a word's end, so every known word becomes
    exactly one token whatever the merge order; any other text still tokenizes (character by
    character) instead of failing.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for tok in _SPECIAL + chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in vocabulary_words():
        suffix = word[-1] + "</w>"
        for char in reversed(word[:-1]):
            merged = char + suffix
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((char, suffix))
            suffix = merged
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TOKEN_LENGTH)


def text_encoder_config(vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=TEXT_DIM * 2,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=TOKEN_LENGTH,
        projection_dim=TEXT_DIM, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def build_text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(text_encoder_config(vocab_size))


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 48, 64), layers_per_block=1, latent_channels=4,
        norm_num_groups=16, sample_size=PIXELS, mid_block_add_attention=False,
    )


def build_unet() -> UNet3DConditionModel:
    return UNet3DConditionModel(
        sample_size=PIXELS // LATENT_DOWNSCALE, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64, 96), layers_per_block=1, norm_num_groups=16,
        cross_attention_dim=TEXT_DIM, attention_head_dim=8,
    )


def build_scheduler(zero_snr: bool = False) -> DDIMScheduler:
    """ModelScope's settings (scaled-linear betas, epsilon prediction), or with ``zero_snr`` the
    same betas rescaled to zero terminal SNR with v-prediction and trailing timesteps, so the last
    training step is pure noise, as sampling starts."""
    extra = ({"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
             if zero_snr else {"prediction_type": "epsilon"})
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, **extra,
    )
