"""Scoring reads the last real token, whatever the padding side, batch or tokenizer."""

from __future__ import annotations

import torch

from reward.encoding import common_prefix_length, encode_conversations, last_token_index, position_ids_from_mask
from reward.scoring import EnsembleScorer, RewardScorer, RewardStats
from tests.reward.tiny import WORDS, make_reward_model, make_tokenizer

PROMPTS = ["reverse the words: a cat sat", "the dog", "one two three", [{"role": "user", "content": "say yes"}]]
RESPONSES = ["sat cat a", "dog the sat on the mat red blue green sun", "three", "yes"]


def reference_rewards(model, tokenizer, prompts, responses) -> torch.Tensor:
    """Each conversation alone, unpadded, through transformers' own forward (last position)."""
    seqs = encode_conversations(tokenizer, prompts, responses)
    pad = model.config.pad_token_id
    model.config.pad_token_id = None  # batch of one: transformers then reads position -1
    try:
        with torch.no_grad():
            return torch.stack([model(input_ids=torch.tensor([s])).logits[0, 0] for s in seqs])
    finally:
        model.config.pad_token_id = pad


def test_last_token_index_and_positions_under_both_paddings():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 4]
    assert last_token_index(left).tolist() == [4, 4]
    assert position_ids_from_mask(left).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_scores_match_unpadded_forward_under_left_and_right_padding():
    tok = make_tokenizer()
    model = make_reward_model(tok)
    expected = reference_rewards(model, tok, PROMPTS, RESPONSES)
    assert expected.std() > 1e-3  # the texts do get different rewards
    for side in ("left", "right"):
        tok.padding_side = side
        got = RewardScorer(model, tok).score(PROMPTS, RESPONSES, normalize=False, batch_size=4)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_last_token_is_read_even_when_pad_equals_eos():
    # transformers' own pooling skips a final EOS when pad == eos; ours must not
    tok = make_tokenizer(pad_is_eos=True)
    model = make_reward_model(tok)
    got = RewardScorer(model, tok).score(PROMPTS, RESPONSES, normalize=False)
    torch.testing.assert_close(got, reference_rewards(model, tok, PROMPTS, RESPONSES), atol=1e-5, rtol=1e-5)
    seqs = encode_conversations(tok, PROMPTS, RESPONSES)
    assert all(s[-1] == tok.eos_token_id for s in seqs)


def test_scores_do_not_depend_on_batch_composition():
    tok = make_tokenizer()
    tok.padding_side = "left"
    scorer = RewardScorer(make_reward_model(tok), tok)
    alone = torch.cat([scorer.score([p], [r], normalize=False) for p, r in zip(PROMPTS, RESPONSES)])
    filler_p, filler_r = ["a"] * 3, [" ".join(WORDS * 2)] * 3  # long neighbours force heavy padding
    mixed = scorer.score(filler_p + PROMPTS, filler_r + RESPONSES, normalize=False, batch_size=3)[3:]
    torch.testing.assert_close(mixed, alone, atol=1e-5, rtol=1e-5)
    assert scorer.score(PROMPTS, RESPONSES, normalize=False, batch_size=1).tolist() == alone.tolist()


def test_responses_from_another_tokenizer_are_retokenized_with_the_reward_models(tmp_path):
    policy_tok = make_tokenizer(seed_words=list(reversed(WORDS)), vocab_size=280)
    reward_tok = make_tokenizer()
    assert len(policy_tok) != len(reward_tok)
    assert policy_tok(RESPONSES[1])["input_ids"] != reward_tok(RESPONSES[1])["input_ids"]
    # the policy's responses arrive as its decoded token ids
    texts = [policy_tok.decode(policy_tok(r, add_special_tokens=False)["input_ids"]) for r in RESPONSES]
    assert texts == RESPONSES
    model = make_reward_model(reward_tok)
    model.save_pretrained(tmp_path)
    reward_tok.save_pretrained(tmp_path)
    RewardStats(mean=-3.0, std=2.0, n=10).save(tmp_path)
    scorer = RewardScorer.from_pretrained(tmp_path, device="cpu")
    raw = scorer.score(PROMPTS, texts, normalize=False)
    torch.testing.assert_close(raw, reference_rewards(model, reward_tok, PROMPTS, RESPONSES), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scorer.score(PROMPTS, texts), (raw + 3.0) / 2.0)


def test_ensemble_mean_and_conservative_score():
    tok = make_tokenizer()
    a = RewardScorer(make_reward_model(tok, seed=1), tok, RewardStats(0.0, 1.0, 1))
    b = RewardScorer(make_reward_model(tok, seed=2), tok, RewardStats(1.0, 2.0, 1))
    ra, rb = a.score(PROMPTS, RESPONSES), b.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(EnsembleScorer([a, b]).score(PROMPTS, RESPONSES), (ra + rb) / 2)
    conservative = EnsembleScorer([a, b], k=1.0).score(PROMPTS, RESPONSES)
    torch.testing.assert_close(conservative, (ra + rb) / 2 - (ra - rb).abs() / 2)


def test_stats_of_rewards():
    stats = RewardStats.of([1.0, 3.0])
    assert (stats.mean, stats.std, stats.n) == (2.0, 1.0, 2)


def test_a_repeated_conversation_goes_through_the_model_once():
    # K candidates of a prompt make K(K-1)/2 pairs: scoring pairs must not pay for each response K-1 times.
    tok = make_tokenizer()
    scorer = RewardScorer(make_reward_model(tok), tok)
    rows_seen = []
    scorer.model.score.register_forward_hook(lambda module, args, out: rows_seen.append(args[0].shape[0]))
    prompt, responses = PROMPTS[0], RESPONSES  # four candidates of one prompt
    alone = scorer.raw_scores([prompt] * 4, responses)
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    rows_seen.clear()
    first, second = scorer.raw_pair_scores([prompt] * len(pairs), [responses[a] for a, _ in pairs],
                                           [responses[b] for _, b in pairs], batch_size=2)
    assert sum(rows_seen) == 4  # 6 pairs, 12 sides, 4 distinct conversations
    torch.testing.assert_close(first, alone[[a for a, _ in pairs]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, alone[[b for _, b in pairs]], atol=1e-5, rtol=1e-5)


def test_the_conversations_of_one_prompt_read_the_prompt_once():
    tok = make_tokenizer()
    scorer = RewardScorer(make_reward_model(tok), tok)
    prompts = [PROMPTS[0]] * len(RESPONSES) + [PROMPTS[1]] * len(RESPONSES)
    responses = list(RESPONSES) * 2
    tokens_read = []
    embed = scorer.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: tokens_read.append(int((args[0] != tok.pad_token_id).sum())))
    try:
        together = scorer.raw_scores(prompts, responses, batch_size=64)
    finally:
        hook.remove()
    whole = [encode_conversations(tok, [p], [r])[0] for p, r in zip(prompts, responses)]
    shared = sum(common_prefix_length(whole[i : i + len(RESPONSES)]) for i in (0, len(RESPONSES)))
    assert sum(tokens_read) == sum(map(len, whole)) - shared * (len(RESPONSES) - 1)  # each prompt once, not 4 times
    one_by_one = torch.cat([scorer.raw_scores([p], [r]) for p, r in zip(prompts, responses)])
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together, reference_rewards(scorer.model, tok, prompts, responses), atol=1e-5, rtol=1e-5)
