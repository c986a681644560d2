"""KL of a candidate policy from a reference, estimated on the candidate's own samples.

With y ~ pi (the candidate, at temperature 1, no top-k/top-p: the distribution PPO's KL
penalty is about) and the log-ratio log r = log pi_ref(y_t) - log pi(y_t) per token,
Schulman's estimators ("Approximating KL divergence", 2020) are

    k1 = -log r                (unbiased, high variance, can be negative per sample)
    k3 = (r - 1) - log r       (unbiased, always >= 0, lower variance)

Summed over a response's tokens they estimate the sequence KL (chain rule); divided by its
token count, the per-token KL. Greedy responses are not samples of pi, so KL is measured on
separate temperature-1 samples.

When the two tokenizers differ, per-token ratios do not line up; the response text is then
re-tokenized for the reference and only sequence-level estimates are given, with k3 taken on
the sequence ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from alignment.generation import chat_prompts, generate_ids
from alignment.ppo.kl import kl_estimate  # the estimators PPO penalises with, shared


def k1(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """log pi - log pi_ref, per token, for tokens sampled from pi."""
    return kl_estimate(logp, logp_ref, "k1")


def k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """(r - 1) - log r with r = pi_ref / pi, per token; non-negative."""
    return kl_estimate(logp, logp_ref, "k3")


@dataclass
class PolicySamples:
    """Samples with the exact token ids drawn, so their log-probabilities can be rescored."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]  # up to and including EOS when the response ended
    texts: list[str]
    ended: list[bool]

    def to_dict(self) -> dict:
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, d: dict) -> "PolicySamples":
        return cls(d["prompt_ids"], d["response_ids"], d["texts"], d["ended"])


@dataclass
class KLEstimates:
    """Per-sample KL estimates (numpy arrays aligned with the samples)."""

    k1_seq: np.ndarray
    k3_seq: np.ndarray
    k1_token: np.ndarray
    k3_token: np.ndarray
    token_level: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"k1_seq": self.k1_seq, "k3_seq": self.k3_seq, "k1_token": self.k1_token, "k3_token": self.k3_token}


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample_with_ids(
    model, tokenizer, prompts: Sequence, max_new_tokens: int, seed: int = 0, batch_size: int = 64
) -> PolicySamples:
    """One temperature-1 sample per prompt (pure sampling, nothing from the checkpoint's generation_config),
    keeping the token ids."""
    texts = chat_prompts(tokenizer, prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = _device(model)
    eos = tokenizer.eos_token_id
    out = PolicySamples([], [], [], [])
    try:
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                new = generate_ids(model, enc["input_ids"], enc["attention_mask"], max_new_tokens, 1.0, eos,
                                   tokenizer.pad_token_id).ids
                for row, mask, gen in zip(enc["input_ids"], enc["attention_mask"], new):
                    gen = gen.tolist()
                    ended = eos in gen
                    gen = gen[: gen.index(eos) + 1] if ended else gen
                    out.prompt_ids.append(row[mask.bool()].tolist())
                    out.response_ids.append(gen)
                    out.texts.append(tokenizer.decode(gen, skip_special_tokens=True).strip())
                    out.ended.append(ended)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


@torch.no_grad()
def response_logprobs(
    model, prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, batch_size: int = 32
) -> list[torch.Tensor]:
    """log pi(y_t | x, y_<t) for every response token, one float64 tensor per sample."""
    device = _device(model)
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for start in range(0, len(prompt_ids), batch_size):
            seqs = [p + r for p, r in zip(prompt_ids[start : start + batch_size], response_ids[start : start + batch_size])]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):  # right padding: positions count from 0 for everyone
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
            for i, (p, r) in enumerate(zip(prompt_ids[start : start + batch_size], response_ids[start : start + batch_size])):
                out.append(logp[i, len(p) - 1 : len(p) - 1 + len(r)].double().cpu())
    finally:
        model.train(was_training)
    return out


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    return tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def kl_from_reference(
    candidate, candidate_tokenizer, reference, reference_tokenizer, prompts: Sequence, samples: PolicySamples, batch_size: int = 32
) -> KLEstimates:
    """k1/k3 per sequence and per token of the candidate from the reference on `samples`."""
    logp = response_logprobs(candidate, samples.prompt_ids, samples.response_ids, candidate_tokenizer.pad_token_id, batch_size)
    n_tokens = np.array([max(len(r), 1) for r in samples.response_ids], dtype=float)
    if same_vocabulary(candidate_tokenizer, reference_tokenizer):
        ref_prompts = [
            reference_tokenizer(t, add_special_tokens=False)["input_ids"] for t in chat_prompts(reference_tokenizer, prompts)
        ]
        logq = response_logprobs(reference, ref_prompts, samples.response_ids, reference_tokenizer.pad_token_id, batch_size)
        k1_seq = np.array([float(k1(a, b).sum()) for a, b in zip(logp, logq)])
        k3_seq = np.array([float(k3(a, b).sum()) for a, b in zip(logp, logq)])
        return KLEstimates(k1_seq, k3_seq, k1_seq / n_tokens, k3_seq / n_tokens)
    ref_prompts, ref_responses = [], []
    for prompt_text, text, ended in zip(chat_prompts(reference_tokenizer, prompts), samples.texts, samples.ended):
        ref_prompts.append(reference_tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        ids = reference_tokenizer(text, add_special_tokens=False)["input_ids"]
        ref_responses.append(ids + ([reference_tokenizer.eos_token_id] if ended else []))
    logq = response_logprobs(reference, ref_prompts, ref_responses, reference_tokenizer.pad_token_id, batch_size)
    seq_p = torch.tensor([float(a.sum()) for a in logp], dtype=torch.float64)
    seq_q = torch.tensor([float(b.sum()) for b in logq], dtype=torch.float64)
    k1_seq = k1(seq_p, seq_q).numpy()
    k3_seq = k3(seq_p, seq_q).numpy()
    note = "candidate and reference tokenizers differ: KL is sequence-level only (re-tokenized text; k3 on the sequence ratio)"
    return KLEstimates(k1_seq, k3_seq, k1_seq / n_tokens, k3_seq / n_tokens, token_level=False, notes=[note])
