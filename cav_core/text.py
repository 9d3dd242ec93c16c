"""Prompt encoding and textual-inversion tokens in the base's CLIP tokenizer/text encoder."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from .adapter_file import TokenEmbeddings
from .errors import CavError


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode_prompts(base, prompts: Sequence[str], device=None) -> torch.Tensor:
    """Per-token text states [B, L, D] as ModelScope conditions on them (last hidden state)."""
    device = device or base.text_encoder.device
    ids = tokenize(base.tokenizer, prompts).to(device)
    return base.text_encoder(ids)[0]


def with_placeholder(prompt: str, tokens: Sequence[str]) -> str:
    """Prepend the TI tokens unless the prompt already uses them."""
    missing = [t for t in tokens if t not in prompt]
    return " ".join([*missing, prompt]).strip() if missing else prompt


def motion_caption(prompt: str, absorber_tokens: Sequence[str], token_in_prompt: bool) -> str:
    """Stage 2's caption: the absorber's TI tokens prepended when the settings keep them in it."""
    return with_placeholder(prompt, absorber_tokens if token_in_prompt else ())


def ensure_tokens(base, tokens: Sequence[str]) -> list[int]:
    """Register ``tokens`` in the tokenizer and grow the embedding table when needed."""
    tokenizer, encoder = base.tokenizer, base.text_encoder
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new)
    if len(tokenizer) > encoder.get_input_embeddings().num_embeddings:
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        encoder.get_input_embeddings().requires_grad_(False)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    for token in tokens:
        if len(tokenizer(token, add_special_tokens=False).input_ids) != 1:
            raise CavError(f"placeholder token {token!r} is split by the tokenizer; use a name like <my-ref>")
    return ids


def init_vectors(base, init_word: str, count: int) -> torch.Tensor:
    """Start TI vectors at the mean input embedding of ``init_word`` (a sensible neighbourhood)."""
    table = base.text_encoder.get_input_embeddings().weight
    ids = base.tokenizer(init_word or "object", add_special_tokens=False).input_ids or [0]
    return table[ids].detach().float().mean(0, keepdim=True).repeat(count, 1)


@contextlib.contextmanager
def token_vectors_hooked(base, tokens: Sequence[str], vectors: torch.Tensor) -> Iterator[list[int]]:
    """Make ``tokens`` embed as ``vectors`` [n, dim] without touching the embedding table.

    A forward hook on the token-embedding layer swaps in the vectors where the ids occur, so
    gradients reach only ``vectors`` (training) and the base's table stays bit-identical.
    """
    ids = ensure_tokens(base, tokens)
    id_tensor = torch.tensor(ids)

    def swap(module, inputs, output):
        input_ids = inputs[0]
        match = input_ids.unsqueeze(-1) == id_tensor.to(input_ids.device)  # [B, L, n]
        if not match.any():
            return output
        replacement = (match.to(output.dtype) @ vectors.to(output.device, output.dtype))
        return torch.where(match.any(-1, keepdim=True), replacement, output)

    handle = base.text_encoder.get_input_embeddings().register_forward_hook(swap)
    try:
        yield ids
    finally:
        handle.remove()


def token_embeddings_applied(base, ti: TokenEmbeddings | None):
    """Context in which ``ti``'s tokens mean its learned vectors (no-op for ``None``)."""
    if ti is None:
        return contextlib.nullcontext([])
    return token_vectors_hooked(base, ti.tokens, ti.vectors)
