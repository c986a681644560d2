"""Token lengths under the policy's tokenizer and chat template, as training will see them.

Lengths are counted on the chat-templated text, because that is what SFT, the reward model
and DPO feed the model: the instruction is the templated prompt with the generation prompt
("<|assistant|>\\n"), the total is the templated conversation, and the response is their
difference (so it includes the end-of-turn tokens the model must learn to emit). A row is
*truncated* when its total exceeds `model.max_length`; for preference and ranking rows the
longest response decides, since any pair side that is cut loses its ending.

Texts are rendered in Python (Jinja) but tokenized in batches by the Rust tokenizer, which
is where the time would otherwise go. The templated prompt is a prefix of the templated
conversation for every common chat template, so each text is tokenized once: the prompt,
then only the continuation after it (response, end-of-turn), and total = prompt +
continuation. The prompt ends at the generation prompt (a special token or a newline), where
pre-tokenizers split anyway, so the sum equals the count of the whole text (checked on every
row of the offline suite and the generated rows of `bench/data_inspect.py`); a template whose
prompt is not a prefix is tokenized whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment.data.rows import Kind
from alignment.data.texts import row_text


@dataclass(frozen=True)
class RowLengths:
    instruction: int
    response: int
    """Tokens of the (first or chosen) response, end-of-turn included."""
    total: int
    """Tokens of the longest templated conversation the row yields."""
    responses: tuple[int, ...] = ()
    """Tokens of each response (chosen, rejected / each ranked response), end-of-turn included."""


class TokenCounter:
    """Counts instruction / response / total tokens for batches of rows."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)

    def _render(self, conversations: list[list[dict]], generation_prompt: bool) -> list[str]:
        if not conversations:
            return []
        return self.tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=generation_prompt)

    def _lengths(self, texts: list[str]) -> list[int]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_batch_fast"):  # Rust, parallel, no offsets
            return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def count(self, rows: list[dict], kind: Kind) -> list[RowLengths]:
        prompts: list[list[dict]] = []
        fulls: list[list[dict]] = []
        spans: list[tuple[int, int]] = []  # each row's slice of `fulls`
        for row in rows:
            text = row_text(row, kind)
            prompts.append(text.prompt_messages)
            start = len(fulls)
            fulls += [text.prompt_messages + [{"role": "assistant", "content": r}] for _, r in text.responses]
            spans.append((start, len(fulls)))
        prompt_texts = self._render(prompts, True)
        n_prompt = self._lengths(prompt_texts)
        full_texts = self._render(fulls, False)
        rows_of = [r for r, (a, b) in enumerate(spans) for _ in range(a, b)]
        tails = [
            t[len(prompt_texts[r]):] if t.startswith(prompt_texts[r]) else None for t, r in zip(full_texts, rows_of)
        ]
        whole = [i for i, t in enumerate(tails) if t is None]  # not a prefix: count the whole text
        n_tail = self._lengths([t for t in tails if t is not None])
        n_whole = iter(self._lengths([full_texts[i] for i in whole]))
        tail_iter = iter(n_tail)
        n_full = [next(n_whole) if t is None else n_prompt[r] + next(tail_iter) for t, r in zip(tails, rows_of)]
        out = []
        for p, (a, b) in zip(n_prompt, spans):
            each = tuple(n - p for n in n_full[a:b])
            out.append(RowLengths(instruction=p, response=each[0], total=max(n_full[a:b]), responses=each))
        return out
