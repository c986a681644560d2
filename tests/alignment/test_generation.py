"""Every sampler draws from softmax(filter(logits / T)) and nothing a checkpoint's generation_config adds.

The checkpoint here (`make_opinionated_policy`) ships a temperature, top-k, top-p, repetition
penalty, n-gram ban, minimum length and suppressed and banned tokens, as real checkpoints ship
some of them. transformers merges such settings into every `generate` call. The distribution
each token was actually drawn from is read off `torch.multinomial`, the one place generate
samples, and compared with the logprobs PPO and the KL estimates recompute.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from alignment.evaluation.kl import sample_with_ids
from alignment.generation import generate, generate_ids
from alignment.ppo.masks import truncate_after_eos
from alignment.ppo.rollout import encode_prompts, eos_ids, left_pad, policy_forward, sample_responses
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.ppo_tiny import make_opinionated_policy

PROMPTS = ["say cat", "say one two three red blue green moon sun", "say dog", "say yes no"] * 4


@pytest.fixture(scope="module")
def opinionated(tmp_path_factory):
    path = make_opinionated_policy(tmp_path_factory.mktemp("opinionated"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.generation_config.repetition_penalty == 1.8  # the checkpoint's settings are really there
    return path, tok, model


class MultinomialSpy:
    """Wraps torch.multinomial: keeps each step's probabilities and the token drawn from them."""

    def __init__(self, monkeypatch):
        self.probs: list[torch.Tensor] = []
        self.tokens: list[torch.Tensor] = []
        real = torch.multinomial

        def spy(probs, num_samples, *args, **kwargs):
            drawn = real(probs, num_samples, *args, **kwargs)
            self.probs.append(probs.detach().clone())
            self.tokens.append(drawn.detach().clone())
            return drawn

        monkeypatch.setattr(torch, "multinomial", spy)

    def drawn(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [B, steps], log of the probability each was drawn with [B, steps])."""
        tokens = torch.cat(self.tokens, dim=1)
        probs = torch.stack(self.probs, dim=1)
        return tokens, probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).log()


def sample_at_each_site(site, model, tok, ids, mask, temperature):
    eos = eos_ids(tok, model)
    if site == "ppo rollout":
        sample_responses(model, ids, mask, 6, temperature, eos, tok.pad_token_id)
    elif site == "held-out KL":
        sample_with_ids(model, tok, PROMPTS, max_new_tokens=6, seed=1)
    else:
        generate(model, tok, PROMPTS, max_new_tokens=6, temperature=temperature, seed=1)


@pytest.mark.parametrize("site", ["ppo rollout", "held-out KL", "generation"])
def test_samplers_draw_from_the_policy_whose_logprobs_are_recomputed(opinionated, monkeypatch, site):
    _, tok, model = opinionated
    temperature = 1.0 if site == "held-out KL" else 0.7
    ids, mask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    spy = MultinomialSpy(monkeypatch)
    torch.manual_seed(0)
    sample_at_each_site(site, model, tok, ids, mask, temperature)
    tokens, drawn_logp = spy.drawn()
    response, r_mask, _ = truncate_after_eos(tokens, eos_ids(tok, model), tok.pad_token_id)
    with torch.no_grad():
        recomputed, _ = policy_forward(model, ids, mask, response, r_mask, temperature)
    gap = ((drawn_logp - recomputed).abs() * r_mask).sum() / r_mask.sum()
    assert float(gap) < 1e-4, f"{site}: sampled {float(gap):.3f} nats/token away from the recomputed policy"


def test_sampler_logprobs_are_what_was_sampled_with_and_without_top_k(opinionated, monkeypatch):
    """The rollout's own logprobs: equal to the recomputed ones when nothing filters, and to the
    filtered distribution actually sampled when top-k/top-p are asked for (then they differ)."""
    _, tok, model = opinionated
    ids, mask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    eos = eos_ids(tok, model)
    torch.manual_seed(0)
    raw, sampler = sample_responses(model, ids, mask, 6, 0.7, eos, tok.pad_token_id)
    response, r_mask, _ = truncate_after_eos(raw, eos, tok.pad_token_id)
    with torch.no_grad():
        recomputed, _ = policy_forward(model, ids, mask, response, r_mask, 0.7)
    assert sampler.shape == raw.shape and r_mask.sum() > len(PROMPTS)
    assert float(((sampler - recomputed).abs() * r_mask).sum() / r_mask.sum()) < 1e-4

    spy = MultinomialSpy(monkeypatch)
    torch.manual_seed(0)
    raw, sampler = sample_responses(model, ids, mask, 6, 0.7, eos, tok.pad_token_id, top_k=3, top_p=0.9)
    tokens, drawn_logp = spy.drawn()
    _, r_mask, _ = truncate_after_eos(raw, eos, tok.pad_token_id)
    valid = r_mask.bool()
    assert torch.equal(tokens[valid], raw[valid])  # after EOS generate writes pads over what was drawn
    torch.testing.assert_close(sampler[valid], drawn_logp[valid], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        recomputed, _ = policy_forward(model, ids, mask, raw.masked_fill(~valid, tok.pad_token_id), r_mask, 0.7)
    assert float((sampler - recomputed)[valid].abs().mean()) > 1e-3  # top-k renormalises: log pi rises


def test_greedy_decoding_ignores_the_checkpoints_settings_and_restores_them(opinionated, tmp_path):
    path, tok, model = opinionated
    plain = AutoModelForCausalLM.from_pretrained(path).eval()
    plain.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    own = model.generation_config
    assert generate(model, tok, PROMPTS, max_new_tokens=6) == generate(plain, tok, PROMPTS, max_new_tokens=6)
    assert model.generation_config is own and own.repetition_penalty == 1.8


def test_k_samples_per_prompt_read_each_prompt_once_and_sample_the_recomputed_policy(opinionated):
    """With K samples per prompt the prompts are prefilled once (their cache copied K times), and each
    of the K x B rows is still drawn from the policy that a whole-sequence forward recomputes."""
    _, tok, model = opinionated
    prompts = PROMPTS[:4]
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    eos = eos_ids(tok, model)
    rows_read = []
    hook = model.get_input_embeddings().register_forward_hook(lambda _m, args, _out: rows_read.append(args[0].shape))
    try:
        torch.manual_seed(0)
        drawn = generate_ids(model, ids, mask, 6, 0.7, eos, tok.pad_token_id, num_return_sequences=3,
                             sampler_logprobs=True)
    finally:
        hook.remove()
    assert rows_read[0] == (len(prompts), ids.shape[1] - 1)  # the prompts once, without their last token
    assert all(shape[0] == 3 * len(prompts) and shape[1] == 1 for shape in rows_read[1:])  # then one token per row
    response, r_mask, _ = truncate_after_eos(drawn.ids, eos, tok.pad_token_id)
    with torch.no_grad():
        recomputed, _ = policy_forward(model, ids.repeat_interleave(3, 0), mask.repeat_interleave(3, 0),
                                       response, r_mask, 0.7)
    assert r_mask.sum() > len(prompts)
    assert float(((drawn.logprobs - recomputed).abs() * r_mask).sum() / r_mask.sum()) < 1e-4

    greedy = generate_ids(model, ids, mask, 6, 0.0, eos, tok.pad_token_id, num_return_sequences=2).ids
    alone = generate_ids(model, ids, mask, 6, 0.0, eos, tok.pad_token_id).ids
    assert torch.equal(greedy, alone.repeat_interleave(2, 0))
