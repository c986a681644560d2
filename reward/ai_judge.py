"""The AI annotator's judge: which of two responses is better, read from a model's logprobs.

A causal LM judge sees the pair in its own chat template,

    user: <template with the principles, the request, Response A, Response B>
          "Which response is better? Answer A or B."
    assistant: ▌

and its verdict is the next-token distribution, not parsed text:

    P(A) = softmax over {A, B} of logsumexp_t log p(t) for t in the first tokens of "A" and " A"

(likewise for B), so a model that would write "A." or " A" or "**A**" first is read the same
way, and a judge that rambles is still scored. Parsing free text would make the verdict
depend on decoding and on how the model phrases itself; the logprobs give a probability.

Position randomisation: with `swap`, each pair is judged in both orders (x as A, then y as A)
in the same batch, and

    p = (P_xy(A) + 1 - P_yx(A)) / 2                         P(x better), order bias averaged out

An order-inconsistent verdict (x wins as A and loses as A, or the reverse) is a tie: it
shows the judge chose a position, not a response. confidence = |p - 1/2| * 2 in [0, 1]
(0 for a coin flip), recorded with every judgment.

A reward model can stand in as the judge (P(x better) = sigmoid(r(x) - r(y)), symmetric in
the order, so the swap changes nothing): the same machinery, the toolkit's learnt reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from alignment.errors import UserError
from alignment.models import load_policy, load_tokenizer
from alignment.recipe.model import ModelConfig
from reward.principles import Principle
from reward.scoring import RewardScorer, is_reward_checkpoint

LETTERS = ("A", "B")
PLACEHOLDER = re.compile(r"\{(principles|prompt|a|b)\}")


class PairJudge(Protocol):
    def prob_first_better(self, prompts: Sequence, firsts: Sequence[str], seconds: Sequence[str]) -> np.ndarray:
        """P(first response better) per pair, shown in this order (first as A)."""

    def profile(self) -> dict:
        """What judges (model, prompt, principles), stored with the AI annotator."""


@dataclass(frozen=True)
class Verdict:
    """One pair's verdict, in the order the pair was given (first, second)."""

    p_first: float
    """P(first better), averaged over the orders judged."""
    p_orders: tuple[float, ...]
    """P(first better) per order: (as A,) or (as A, as B)."""
    choice: str
    """'first', 'second' or 'tie' (order-inconsistent)."""
    confidence: float
    """|p_first - 1/2| * 2."""

    @property
    def consistent(self) -> bool:
        return self.choice != "tie"


def combine(p_orders: Sequence[float]) -> Verdict:
    """The verdict from P(first better) in each order judged (see the module docstring)."""
    p = float(np.mean(p_orders))
    wins = {po > 0.5 for po in p_orders}
    if len(wins) > 1 or p == 0.5:
        choice = "tie"
    else:
        choice = "first" if p > 0.5 else "second"
    return Verdict(p, tuple(float(x) for x in p_orders), choice, abs(p - 0.5) * 2)


def judge_pairs(judge: PairJudge, prompts: Sequence, firsts: Sequence[str], seconds: Sequence[str],
                swap: bool = True, batch_size: int = 16, progress: bool = False) -> list[Verdict]:
    """Verdicts for every pair; with `swap`, both orders of a batch go through one forward pass."""
    if not len(prompts) == len(firsts) == len(seconds):
        raise ValueError(f"{len(prompts)} prompts, {len(firsts)} first and {len(seconds)} second responses")
    out: list[Verdict] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="AI judge", unit="batch", disable=not progress):
        p, x, y = (list(v[start : start + batch_size]) for v in (prompts, firsts, seconds))
        if swap:
            probs = judge.prob_first_better(p + p, x + y, y + x)
            n = len(p)
            out += [combine((float(a), 1.0 - float(b))) for a, b in zip(probs[:n], probs[n:])]
        else:
            out += [combine((float(a),)) for a in judge.prob_first_better(p, x, y)]
    return out


def render_prompt(prompt) -> str:
    """A request as text: a string as is, a conversation turn by turn."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def principles_text(principles: Sequence[Principle]) -> str:
    return "\n".join(f"- {p.description}" for p in principles)


def verdict_token_ids(tokenizer) -> dict[str, list[int]]:
    """Per letter, the distinct first tokens of "A" and " A" that decode to the letter itself.

    A tokenizer that splits " A" into a space token and "A" would otherwise give the space
    token to both letters; it is left out. The two letters must not share a token.
    """
    ids: dict[str, list[int]] = {}
    for letter in LETTERS:
        found = []
        for variant in (letter, " " + letter):
            enc = tokenizer.encode(variant, add_special_tokens=False)
            if enc and tokenizer.decode([enc[0]]).strip() == letter and enc[0] not in found:
                found.append(enc[0])
        if not found:
            raise UserError(f"the judge's tokenizer has no token for the verdict {letter!r}")
        ids[letter] = found
    if set(ids["A"]) & set(ids["B"]):
        raise UserError("the judge's tokenizer gives the verdicts 'A' and 'B' a common first token")
    return ids


class LogprobJudge:
    """A causal LM as judge: P(A) from the next-token logprobs of the verdict letters."""

    def __init__(self, model, tokenizer, template: str, principles: Sequence[Principle] = (), max_length: int = 512,
                 name: str = ""):
        for key in ("{prompt}", "{a}", "{b}"):
            if key not in template:
                raise UserError(f"labels.ai.template must contain {key}")
        self.model, self.tokenizer = model.eval(), tokenizer
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or max_length
        # a prompt longer than this loses its start (the instructions), never the responses and the question
        self.template, self.principles, self.max_length, self.name = template, list(principles), min(max_length, limit), name
        self.ids = verdict_token_ids(tokenizer)

    @classmethod
    def from_pretrained(cls, path: str, dtype: str, template: str, principles: Sequence[Principle] = (),
                        max_length: int = 512) -> "LogprobJudge":
        cfg = ModelConfig(name_or_path=path, dtype=dtype)
        return cls(load_policy(path, cfg), load_tokenizer(path, cfg), template, principles, max_length, name=path)

    def render(self, prompt, a: str, b: str) -> str:
        """The judge's user turn. The placeholders are filled in one pass, so a response that
        contains "{b}" (or any braces) is shown as written."""
        values = {"principles": principles_text(self.principles), "prompt": render_prompt(prompt), "a": a, "b": b}
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)

    @torch.no_grad()
    def prob_first_better(self, prompts, firsts, seconds) -> np.ndarray:
        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": self.render(p, a, b)}],
                                                    tokenize=False, add_generation_prompt=True)
                 for p, a, b in zip(prompts, firsts, seconds)]
        seqs = [ids[-self.max_length :] for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at each sequence's first token
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
        logp = logits.log_softmax(-1)
        a = torch.logsumexp(logp[:, self.ids["A"]], -1)
        b = torch.logsumexp(logp[:, self.ids["B"]], -1)
        return torch.sigmoid(a - b).cpu().numpy()

    def profile(self) -> dict:
        return {"judge": "logprob", "model": self.name, "template": self.template,
                "principles": [p.as_dict() for p in self.principles], "verdict_tokens": self.ids}


class RewardModelJudge:
    """A reward model as judge: P(first better) = sigmoid(r(first) - r(second))."""

    def __init__(self, scorer, name: str = ""):
        self.scorer, self.name = scorer, name

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "auto") -> "RewardModelJudge":
        return cls(RewardScorer.from_pretrained(path, dtype=dtype), name=path)

    def prob_first_better(self, prompts, firsts, seconds) -> np.ndarray:
        r1, r2 = self.scorer.raw_pair_scores(prompts, firsts, seconds)
        return torch.sigmoid(r1 - r2).numpy()

    def profile(self) -> dict:
        return {"judge": "reward_model", "model": self.name}


def load_judge(path: str, dtype: str, template: str, principles: Sequence[Principle], max_length: int) -> PairJudge:
    """A reward-model judge for a reward checkpoint folder, else a logprob judge."""
    if is_reward_checkpoint(path):
        return RewardModelJudge.from_pretrained(path)
    return LogprobJudge.from_pretrained(path, dtype, template, principles, max_length)
