"""Scoring (prompt, response) pairs with a trained reward model: the API PPO and eval call.

    scorer = RewardScorer.from_pretrained("runs/quickstart/reward")
    rewards = scorer.score(prompts, responses)          # torch.Tensor [N], float32, on CPU

The text is re-tokenized with the reward model's own tokenizer and chat template, so the
policy may use a different tokenizer. With `normalize=True` (the default) scores are
(r − mean) / std with the statistics of the reference (SFT) policy's responses stored in
`reward_stats.json` beside the checkpoint, so PPO's rewards are centred on the SFT policy.

An ensemble (`EnsembleScorer`) averages several reward models' normalised scores, or takes
mean − k·std across them for conservative scoring against over-optimisation (Coste et al.
2023, "Reward model ensembles help mitigate overoptimization").
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from alignment.errors import UserError
from alignment.models import pick_device, pick_dtype
from alignment.threads import settle_threads
from reward.encoding import PrefixBatch, batches_of_groups, encode_conversations, shared_prefix_rewards

STATS_FILE = "reward_stats.json"


@dataclass
class RewardStats:
    """Mean and standard deviation of raw rewards on reference responses (`reward_stats.json`)."""

    mean: float = 0.0
    std: float = 1.0
    n: int = 0

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / STATS_FILE
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "RewardStats | None":
        path = Path(folder) / STATS_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(mean=float(raw["mean"]), std=float(raw["std"]), n=int(raw.get("n", 0)))
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: not a valid reward_stats.json ({err}); expected {{\"mean\", \"std\", \"n\"}}") from None

    @classmethod
    def of(cls, rewards: Sequence[float] | torch.Tensor) -> "RewardStats":
        r = torch.as_tensor(rewards, dtype=torch.float64)
        std = float(r.std(correction=0)) if r.numel() > 1 else 1.0
        return cls(mean=float(r.mean()), std=std if std > 1e-8 else 1.0, n=int(r.numel()))


class RewardScorer:
    """Batched scalar rewards from one reward-model checkpoint."""

    def __init__(self, model, tokenizer, stats: RewardStats | None = None, max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.stats = stats
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)
        self.truncated = 0  # conversations cut from the left to fit max_length, over this scorer's life

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, device: str | torch.device | None = None, dtype: str = "auto",
        max_length: int | None = None,
    ) -> "RewardScorer":
        """Load a reward checkpoint folder (model + tokenizer + reward_stats.json)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"reward model not found: {path} (expected a save_pretrained folder with config.json)")
        device = pick_device(str(device) if device else None)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=pick_dtype(dtype, device))
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load reward model {path}: {str(err).splitlines()[0]}") from None
        if getattr(model.config, "num_labels", None) != 1:
            raise UserError(f"{path}: a reward model has num_labels=1, this one has {model.config.num_labels}")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if device.type == "cpu":
            settle_threads(model)
        return cls(model.to(device), tokenizer, RewardStats.load(path), max_length=max_length)

    def _encode(self, prompts: Sequence, responses: Sequence[str]) -> list[tuple[list[int], bool]]:
        """Each conversation's tokens, and whether it was cut to `max_length`."""
        encoded = []
        for s in encode_conversations(self.tokenizer, prompts, responses):
            cut = bool(self.max_length) and len(s) > self.max_length
            if cut:  # keep the response and its end: cut the prompt's start
                s = s[-self.max_length :]
                self.truncated += 1
            encoded.append((s, cut))
        return encoded

    @torch.no_grad()
    def raw_scores(
        self, prompts: Sequence, responses: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> torch.Tensor:
        """Unnormalised rewards, float32 on CPU, in input order.

        Each distinct conversation is scored once. Pairwise evaluation repeats them: K
        candidates of one prompt make K(K-1)/2 pairs, so scoring chosen and rejected side by
        side would run a response through the model up to K-1 times (7x at K=8). And the
        conversations of one prompt are scored together, the prompt read once for all of them
        (`reward.encoding.shared_prefix_rewards`, as in training).
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not len(prompts):
            return torch.zeros(0)
        distinct: dict[tuple[int, ...], int] = {}
        groups: dict[object, list[int]] = {}  # a prompt (or a cut conversation alone) -> its distinct conversations
        slots = []
        for prompt, (seq, cut) in zip(prompts, self._encode(prompts, responses)):
            key = tuple(seq)
            if key not in distinct:
                distinct[key] = len(distinct)
                owner = ("cut", len(distinct)) if cut else ("prompt", json.dumps(prompt, sort_keys=True))
                groups.setdefault(owner, []).append(distinct[key])
            slots.append(distinct[key])
        seqs = list(distinct)
        scores = self._score_groups([[seqs[j] for j in g] for g in groups.values()], batch_size, progress)
        out = torch.empty(len(seqs), dtype=torch.float32)
        out[torch.as_tensor([j for g in groups.values() for j in g])] = scores
        return out[torch.as_tensor(slots)]

    def raw_pair_scores(
        self, prompts: Sequence, firsts: Sequence[str], seconds: Sequence[str], batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised rewards of both sides of each pair, scored in one pass, so that a
        response that is on one side of a pair and on the other side of another is scored once."""
        prompts = list(prompts)
        scores = self.raw_scores(prompts + prompts, list(firsts) + list(seconds), batch_size=batch_size,
                                 progress=progress)
        return scores[: len(prompts)], scores[len(prompts) :]

    def _score_groups(self, groups: list[list[tuple[int, ...]]], batch_size: int, progress: bool) -> torch.Tensor:
        """Rewards of every group's sequences (one prompt's conversations), flattened in group order:
        whole groups per batch, up to `batch_size` sequences, similar lengths together, each group's
        shared prefix read once (called under raw_scores' no_grad)."""
        order = sorted(range(len(groups)), key=lambda g: max(map(len, groups[g])))
        offsets = torch.tensor([0] + [len(g) for g in groups]).cumsum(0).tolist()
        out = torch.empty(offsets[-1], dtype=torch.float32)
        batches = list(batches_of_groups([len(groups[g]) for g in order], batch_size))
        for batch in tqdm(batches, desc="scoring", unit="batch", disable=not progress):
            chosen = [order[b] for b in batch]
            prefix = PrefixBatch.of([groups[g] for g in chosen], self.tokenizer.pad_token_id).to(self.device)
            rewards = shared_prefix_rewards(self.model, prefix).float().cpu()
            rows = torch.as_tensor([r for g in chosen for r in range(offsets[g], offsets[g + 1])])
            out[rows] = rewards
        return out

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            return raw
        return (raw - self.stats.mean) / self.stats.std

    def score(
        self,
        prompts: Sequence[str | list[dict]],
        responses: Sequence[str],
        normalize: bool = True,
        batch_size: int = 32,
        progress: bool = False,
    ) -> torch.Tensor:
        """Rewards for each (prompt, response): float32 tensor [N] on CPU.

        `normalize=True` applies the stored reference statistics (a no-op if the checkpoint has
        none). The result does not depend on how the inputs are batched or padded.
        """
        raw = self.raw_scores(prompts, responses, batch_size=batch_size, progress=progress)
        return self.normalize(raw) if normalize else raw


class EnsembleScorer:
    """Several reward models scoring the same text: mean, or mean − k·std (conservative).

    Members are normalised with their own statistics before they are combined, since two
    reward models' raw scales are unrelated; std is across members (population std).
    """

    def __init__(self, scorers: Sequence[RewardScorer], k: float = 0.0):
        if not scorers:
            raise UserError("an ensemble needs at least one reward model")
        self.scorers = list(scorers)
        self.k = k

    @classmethod
    def from_pretrained(cls, paths: Sequence[str | os.PathLike], k: float = 0.0, device=None) -> "EnsembleScorer":
        return cls([RewardScorer.from_pretrained(p, device=device) for p in paths], k=k)

    def member_scores(self, prompts, responses, normalize: bool = True, batch_size: int = 32) -> torch.Tensor:
        """[M, N]: each member's scores."""
        return torch.stack([s.score(prompts, responses, normalize=normalize, batch_size=batch_size) for s in self.scorers])

    def score(self, prompts, responses, normalize: bool = True, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        scores = self.member_scores(prompts, responses, normalize=normalize, batch_size=batch_size)
        mean = scores.mean(dim=0)
        if self.k == 0 or len(self.scorers) == 1:
            return mean
        return mean - self.k * scores.std(dim=0, correction=0)


def is_reward_checkpoint(path: str | os.PathLike) -> bool:
    path = Path(path)
    if not (path / "config.json").is_file():
        return False
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError:
        return False
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or math.nan
    return labels == 1
