"""A PyTorch eager GPT with scratchlm's architecture: the yardstick of ``compare_torch.py``.

Same model as ``scratchlm.model.GPT`` with the benchmark settings: token + learned
position embeddings, pre-LayerNorm blocks with a fused qkv projection, causal
attention (``F.scaled_dot_product_attention``, PyTorch's fastest eager path), a
tanh-GELU MLP of width 4C, a final LayerNorm and an output head tied to the token
embedding; biases everywhere, no dropout. Trained with ``torch.optim.AdamW`` (weight
decay on matrices only) and ``clip_grad_norm_``, all in float32 with torch defaults.

This is the only benchmark module that imports torch; it runs in its own process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from configs import BETAS, CLIP_NORM, EPS, LEARNING_RATE, VOCAB_SIZE, WEIGHT_DECAY, BenchConfig
from torch import nn


class KVCache:
    """One layer's keys and values for the positions seen so far: (1, H, capacity, D) buffers."""

    def __init__(self, batch, heads, capacity, head_dim, device):
        self.k = torch.zeros(batch, heads, capacity, head_dim, device=device)
        self.v = torch.zeros(batch, heads, capacity, head_dim, device=device)
        self.length = 0

    def append(self, k, v):
        t = k.shape[2]
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        H, D = self.heads, C // self.heads
        q, k, v = self.qkv(x).split(C, dim=-1)                       # 3 x (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)                       # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)                       # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)                       # (B, H, T, D)
        if cache is not None:
            k, v = cache.append(k, v)                                # (B, H, Tk, D)
        y = causal_attention(q, k, v)                                # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))         # (B, T, C)


def causal_attention(q, k, v):
    """q (B,H,Tq,D), k/v (B,H,Tk,D); query i sits at position Tk - Tq + i."""
    tq, tk = q.shape[2], k.shape[2]
    if tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if tq == 1:  # one new token sees every cached key
        return F.scaled_dot_product_attention(q, k, v)
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_proj = nn.Linear(4 * dim, dim)

    def forward(self, x, cache=None):
        x = x + self.attn(self.norm1(x), cache)                                # (B, T, C)
        return x + self.fc_proj(F.gelu(self.fc(self.norm2(x)), approximate="tanh"))  # (B, T, C)


class TorchGPT(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_seq_len):
        super().__init__()
        self.n_heads = n_heads
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model)
        proj_std = 0.02 / math.sqrt(2 * n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=proj_std if name.endswith("proj.weight") else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids, targets=None, caches=None, start_pos: int = 0):
        B, T = ids.shape
        positions = torch.arange(start_pos, start_pos + T, device=ids.device)
        x = self.wte(ids) + self.wpe(positions)                                # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])                # (B, T, C)
        logits = F.linear(self.norm_f(x), self.wte.weight)                     # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(-1))

    def new_caches(self, capacity: int):
        D = self.wte.weight.shape[1] // self.n_heads
        device = self.wte.weight.device
        return [KVCache(1, self.n_heads, capacity, D, device) for _ in self.blocks]


class Trainer:
    """The torch twin of ``scratch_gpt.Trainer``: ``step()`` is one full training step."""

    def __init__(self, config: BenchConfig, device: str = "cpu", seed: int = 0, mode: str = "eager"):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        model = TorchGPT(**config.model_kwargs()).to(self.device)
        params = list(model.parameters())
        # the modes a user would pick: eager; torch.compile (inductor, default mode); bf16 autocast
        self.model = torch.compile(model) if mode == "compile" else model
        self.autocast = mode == "bf16"
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=BETAS, eps=EPS)
        shape = (config.batch, config.seq_len)
        self.ids = torch.randint(0, VOCAB_SIZE, shape, device=self.device)      # (B, T)
        self.targets = torch.randint(0, VOCAB_SIZE, shape, device=self.device)  # (B, T)

    def step(self) -> float:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            _, loss = self.model(self.ids, self.targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def device_memory_mib(device: str) -> float | None:
    """Peak GPU memory torch allocated; None on CPU."""
    return None if device == "cpu" else torch.cuda.max_memory_allocated() / 2**20


def build_decoder(config: BenchConfig, context: int, device: str = "cpu", seed: int = 0) -> TorchGPT:
    torch.manual_seed(seed)
    return TorchGPT(**config.model_kwargs(max_seq_len=context)).to(device).eval()


@torch.inference_mode()
def greedy_decode(model: TorchGPT, prompt_ids, new_tokens: int) -> list[int]:
    """The same loop as ``scratch_gpt.greedy_decode``: one prefill, then one position per token."""
    device = model.wte.weight.device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).view(1, -1)  # (1, P)
    caches = model.new_caches(ids.shape[1] + new_tokens)
    out: list[int] = []
    logits, _ = model(ids, caches=caches, start_pos=0)                         # (1, P, V)
    pos = ids.shape[1]
    while True:
        out.append(int(logits[0, -1].argmax()))
        if len(out) == new_tokens:
            return out
        step_ids = torch.tensor([[out[-1]]], dtype=torch.long, device=device)   # (1, 1)
        logits, _ = model(step_ids, caches=caches, start_pos=pos)              # (1, 1, V)
        pos += 1


decode = greedy_decode  # the name compare_torch.py calls on either side
