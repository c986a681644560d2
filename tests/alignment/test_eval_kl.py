"""KL of a candidate from a reference on the candidate's own samples (k1, k3)."""

import math

import numpy as np
import pytest
import torch

from alignment.evaluation.kl import k1, k3, kl_from_reference, response_logprobs, sample_with_ids
from tests.alignment.eval_helpers import one_thread, tiny_policy  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_estimators_by_hand():
    logp, logq = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert float(k1(logp, logq)) == pytest.approx(math.log(2))
    # r = q/p = 0.5: (r - 1) - log r = -0.5 + log 2
    assert float(k3(logp, logq)) == pytest.approx(-0.5 + math.log(2))
    assert float(k3(logq, logq)) == 0.0


def _load(path, sharpen: float = 1.0):
    from alignment.models import load_policy, load_tokenizer

    model, tok = load_policy(path), load_tokenizer(path, padding_side="left")
    with torch.no_grad():  # peakier next-token distributions (the final norm scales the logits only)
        model.model.norm.weight.mul_(sharpen)
    return model, tok


@pytest.fixture(scope="module")
def pair(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("kl")
    a = _load(tiny_policy(tmp / "a", seed=1), sharpen=20.0)
    b = _load(tiny_policy(tmp / "b", seed=2), sharpen=20.0)
    return a, b


def test_sampled_estimates_match_exact_kl_of_the_first_token(pair):
    (model, tok), (ref, ref_tok) = pair
    prompt = "Reverse the words: cat dog sun"
    enc = tok(tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True),
              return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logp = model(**enc).logits[0, -1].log_softmax(-1).double()
        logq = ref(**enc).logits[0, -1].log_softmax(-1).double()
    exact = float((logp.exp() * (logp - logq)).sum())
    assert exact > 0.05  # the two models really differ

    samples = sample_with_ids(model, tok, [prompt] * 500, max_new_tokens=1, seed=0, batch_size=500)
    est = kl_from_reference(model, tok, ref, ref_tok, [prompt] * 500, samples, batch_size=500)
    for values in (est.k1_seq, est.k3_seq):
        se = values.std() / math.sqrt(len(values))
        assert abs(values.mean() - exact) < 4 * se + 1e-3, (values.mean(), exact, se)
    assert (est.k3_seq >= 0).all()
    assert est.token_level


def test_kl_of_a_model_from_itself_is_zero(pair):
    (model, tok), _ = pair
    prompts = ["Reverse the words: cat dog sun", "Give only the first word: red box cup"] * 3
    samples = sample_with_ids(model, tok, prompts, max_new_tokens=6, seed=3)
    est = kl_from_reference(model, tok, model, tok, prompts, samples)
    for values in est.as_dict().values():
        assert np.abs(values).max() < 1e-9


def test_logprobs_do_not_depend_on_batch_padding(pair):
    (model, tok), _ = pair
    prompts = ["cat", "Reverse the words: cat dog sun red box", "sun"]
    samples = sample_with_ids(model, tok, prompts, max_new_tokens=6, seed=4)
    together = response_logprobs(model, samples.prompt_ids, samples.response_ids, tok.pad_token_id, batch_size=8)
    for i in range(len(prompts)):
        alone = response_logprobs(model, samples.prompt_ids[i : i + 1], samples.response_ids[i : i + 1], tok.pad_token_id)
        assert torch.allclose(together[i], alone[0], atol=1e-5)
        assert len(together[i]) == len(samples.response_ids[i])


def test_mismatched_tokenizers_fall_back_to_sequence_level(tmp_path, pair):
    (model, tok), _ = pair
    other_texts = ["completely different words for another vocabulary"] * 10
    ref, ref_tok = _load(tiny_policy(tmp_path / "other", seed=5, vocab_size=280, texts=other_texts))
    prompts = ["Reverse the words: cat dog sun"] * 4
    samples = sample_with_ids(model, tok, prompts, max_new_tokens=5, seed=0)
    est = kl_from_reference(model, tok, ref, ref_tok, prompts, samples)
    assert not est.token_level and "tokenizers differ" in est.notes[0]
    assert np.isfinite(est.k1_seq).all() and (est.k3_seq >= 0).all()
