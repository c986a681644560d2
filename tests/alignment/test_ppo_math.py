"""PPO math on tiny tensors whose answers were worked out by hand (values in the comments)."""

import math

import pytest
import torch

from alignment.ppo.gae import compute_gae
from alignment.ppo.kl import AdaptiveKLController, FixedKLController, kl_estimate
from alignment.ppo.losses import entropy_from_logits, logprobs_of, policy_loss, value_loss
from alignment.ppo.masks import masked_mean, masked_var, masked_whiten, position_ids_from_mask, truncate_after_eos


# ---------------------------------------------------------------- GAE
def test_gae_hand_computed():
    # gamma 0.9, lambda 0.8 (gamma*lambda = 0.72)
    # row 0, 3 valid tokens: deltas 1+0.9*1-0.5=1.4, 0+0.9*1.5-1=0.35, 2-1.5=0.5
    #   A2=0.5, A1=0.35+0.72*0.5=0.71, A0=1.4+0.72*0.71=1.9112
    # row 1, 2 valid tokens (the 99 and 7 sit in padding and must be ignored):
    #   A1=3-1=2, A0=1+0.9*1-0.5+0.72*2=2.84
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 3.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[1.9112, 0.71, 0.5], [2.84, 2.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.4112, 1.71, 2.0], [3.34, 3.0, 0.0]]))


def test_gae_with_gamma_lambda_one_is_monte_carlo_return_minus_value():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5, [0] * 6])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = (rewards * mask).flip(1).cumsum(1).flip(1)  # sum of rewards from t to the end
    torch.testing.assert_close(adv, (to_go - values) * mask)
    torch.testing.assert_close(ret, to_go * mask)


def test_gae_lambda_zero_is_one_step_td():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.25, 4.0]])
    adv, _ = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.5, lam=0.0)
    # 1+0.5*0.25-0.5=0.625, 2+0.5*4-0.25=3.75, 3-4=-1
    torch.testing.assert_close(adv, torch.tensor([[0.625, 3.75, -1.0]]))


# ---------------------------------------------------------------- KL
P = torch.tensor([0.5, 0.3, 0.2])
Q = torch.tensor([0.2, 0.5, 0.3])
# KL(p || q) = 0.5 ln 2.5 + 0.3 ln 0.6 + 0.2 ln(2/3) = 0.45815 - 0.15325 - 0.08109 = 0.22380
TRUE_KL = float((P * (P / Q).log()).sum())


def _expected(estimator: str) -> float:
    """E_{x~p}[k(x)] computed exactly over the three outcomes."""
    return float((P * kl_estimate(P.log(), Q.log(), estimator)).sum())


def test_k1_and_k3_are_unbiased_on_a_known_distribution():
    assert TRUE_KL == pytest.approx(0.22380, abs=1e-4)
    assert TRUE_KL == pytest.approx(float(torch.distributions.kl_divergence(
        torch.distributions.Categorical(P), torch.distributions.Categorical(Q))), abs=1e-6)
    assert _expected("k1") == pytest.approx(TRUE_KL, abs=1e-6)
    assert _expected("k3") == pytest.approx(TRUE_KL, abs=1e-6)


def test_k2_is_biased_but_close_for_nearby_distributions():
    k2 = _expected("k2")
    assert k2 != pytest.approx(TRUE_KL, abs=1e-3)  # biased...
    assert k2 == pytest.approx(TRUE_KL, rel=0.2)  # ...but in the right range
    near_q = torch.tensor([0.48, 0.31, 0.21])
    true_near = float((P * (P / near_q).log()).sum())
    k2_near = float((P * kl_estimate(P.log(), near_q.log(), "k2")).sum())
    assert k2_near == pytest.approx(true_near, rel=0.02)


def test_sampled_estimates_agree_and_k3_has_lower_variance_than_k1():
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(P, 200_000, replacement=True, generator=g)
    k1 = kl_estimate(P.log()[x], Q.log()[x], "k1")
    k3 = kl_estimate(P.log()[x], Q.log()[x], "k3")
    assert float(k1.mean()) == pytest.approx(TRUE_KL, abs=0.01)
    assert float(k3.mean()) == pytest.approx(TRUE_KL, abs=0.01)
    assert float(k3.var()) < float(k1.var())
    assert float(k1.min()) < 0  # k1 is negative on some tokens


def _kl_loss_gradients(estimator: str, n: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(Monte-Carlo mean gradient of the loss term mean k(x), x ~ p; exact gradient of KL(p || q)),
    both with respect to p's logits, as `ppo.kl_in=loss` differentiates it: the samples are fixed,
    log p(x) carries the gradient."""
    logits = P.log().clone().requires_grad_(True)
    x = torch.multinomial(P, n, replacement=True, generator=torch.Generator().manual_seed(0))
    logp = logits.log_softmax(-1)
    (sampled,) = torch.autograd.grad(kl_estimate(logp[x], Q.log()[x], estimator).mean(), logits)
    logp = logits.log_softmax(-1)
    (exact,) = torch.autograd.grad((logp.exp() * (logp - Q.log())).sum(), logits)
    return sampled, exact


def test_as_a_loss_k2_gives_the_kl_gradient_and_k1_gives_none():
    """E_p[grad k2] = E_p[log(p/q) grad log p] = grad KL exactly; E_p[grad k1] = E_p[grad log p] = 0."""
    k2, exact = _kl_loss_gradients("k2")
    assert float(exact.norm()) > 0.3  # P and Q are far enough apart for the gradient to matter
    torch.testing.assert_close(k2, exact, atol=0.01, rtol=0.0)
    k1, _ = _kl_loss_gradients("k1")
    assert float(k1.norm()) < 0.02 * float(exact.norm())  # Monte-Carlo noise around zero
    k3, _ = _kl_loss_gradients("k3")  # grad KL(q || p) in expectation: the right direction, not the size
    assert float(torch.nn.functional.cosine_similarity(k3, exact, dim=0)) > 0.9


def test_k3_and_k2_are_never_negative():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(10_000, generator=g) * 5
    ref = torch.randn(10_000, generator=g) * 5
    for est in ("k2", "k3"):
        assert float(kl_estimate(logp, ref, est).min()) >= 0.0
    # and exactly 0 when the distributions agree
    for est in ("k1", "k2", "k3"):
        assert float(kl_estimate(logp, logp, est).abs().max()) == 0.0


def test_unknown_estimator_is_named():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")


def test_adaptive_kl_controller_hand_computed():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(current=9.0, n_steps=64)  # error 0.5 clipped to 0.2: x(1 + 0.2*64/1e4)
    assert ctl.value == pytest.approx(0.1 * 1.00128)
    ctl.update(current=6.0, n_steps=64)  # on target: unchanged
    assert ctl.value == pytest.approx(0.1 * 1.00128)
    ctl.update(current=5.4, n_steps=1000)  # error -0.1: x(1 - 0.1*0.1)
    assert ctl.value == pytest.approx(0.1 * 1.00128 * 0.99)
    state = ctl.state_dict()
    other = AdaptiveKLController(1.0, target=6.0, horizon=10_000)
    other.load_state_dict(state)
    assert other.value == ctl.value


def test_fixed_kl_controller_never_moves():
    ctl = FixedKLController(0.05)
    ctl.update(current=1e6, n_steps=1000)
    assert ctl.value == 0.05


# ---------------------------------------------------------------- losses
def test_policy_loss_clipping_on_and_off():
    # ratios 1.5, 0.5, 1.0; advantages 1, -1, 2; eps 0.2
    # unclipped -A*r = -1.5, 0.5, -2 ; clipped -A*clip(r) = -1.2, 0.8, -2
    # max = -1.2, 0.8, -2 -> mean -0.8 ; clipped on 2 of 3 tokens
    logp = torch.tensor([[math.log(1.5), math.log(0.5), 0.0]], requires_grad=True)
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, stats = policy_loss(logp, old, adv, mask, cliprange=0.2)
    assert float(loss.detach()) == pytest.approx(-0.8)
    assert float(stats["clipfrac"]) == pytest.approx(2 / 3)
    loss.backward()
    # clipped tokens carry no gradient; the third has d(-A*r)/dlogp = -A*r/3 = -2/3
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, -2 / 3]]))

    unclipped, stats = policy_loss(logp.detach(), old, adv, mask, cliprange=None)
    assert float(unclipped) == pytest.approx(-1.0)
    assert float(stats["clipfrac"]) == 0.0

    masked, _ = policy_loss(logp.detach(), old, adv, torch.tensor([[1, 1, 0]]), cliprange=0.2)
    assert float(masked) == pytest.approx((-1.2 + 0.8) / 2)


def test_policy_loss_at_ratio_one_has_zero_approx_kl_and_no_clipping():
    logp = torch.randn(3, 5)
    loss, stats = policy_loss(logp, logp.clone(), torch.randn(3, 5), torch.ones(3, 5), cliprange=0.2)
    assert float(stats["approx_kl"]) == 0.0
    assert float(stats["clipfrac"]) == 0.0
    assert float(stats["ratio"]) == 1.0


def test_value_loss_clipping_on_and_off():
    # values 1, 2 ; old 0.5, 2 ; returns 2, 0 ; eps 0.2
    # unclipped (V-R)^2 = 1, 4 ; V_clip = 0.7, 2 -> 1.69, 4 ; max 1.69, 4 -> 0.5*mean = 1.4225
    values = torch.tensor([[1.0, 2.0]])
    old = torch.tensor([[0.5, 2.0]])
    returns = torch.tensor([[2.0, 0.0]])
    loss, stats = value_loss(values, old, returns, torch.ones(1, 2), cliprange_value=0.2)
    assert float(loss) == pytest.approx(1.4225)
    assert float(stats["clipfrac"]) == pytest.approx(0.5)
    loss, stats = value_loss(values, old, returns, torch.ones(1, 2), cliprange_value=None)
    assert float(loss) == pytest.approx(1.25)
    assert float(stats["clipfrac"]) == 0.0
    loss, _ = value_loss(values, old, returns, torch.tensor([[0, 1]]), cliprange_value=0.2)
    assert float(loss) == pytest.approx(2.0)


def test_entropy_and_logprobs():
    uniform = torch.zeros(2, 4)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.full((2,), math.log(4)))
    peaked = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert float(entropy_from_logits(peaked)) < 1e-6
    logits = torch.randn(2, 3, 7)
    tokens = torch.randint(0, 7, (2, 3))
    for temperature in (1.0, 0.7):
        expected = torch.log_softmax(logits / temperature, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(logprobs_of(logits, tokens, temperature), expected)


# ---------------------------------------------------------------- masks
def test_whitening_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    valid = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(masked_mean(x, mask)) == pytest.approx(2.5)
    assert float(masked_var(x, mask)) == pytest.approx(float(valid.var()))  # unbiased: 5/3
    white = masked_whiten(x, mask)
    expected = (valid - 2.5) / valid.std()
    torch.testing.assert_close(white[mask.bool()], expected, atol=1e-5, rtol=1e-5)
    assert float(white[~mask.bool()].abs().max()) == 0.0
    # garbage in the padding changes nothing
    noisy = x.masked_fill(~mask.bool(), 1e6)
    torch.testing.assert_close(masked_whiten(noisy, mask), white)
    # shift_mean=False keeps the mean
    kept = masked_whiten(x, mask, shift_mean=False)
    assert float(masked_mean(kept, mask)) == pytest.approx(2.5, abs=1e-5)


def test_masked_mean_of_nothing_is_zero_not_nan():
    assert float(masked_mean(torch.ones(2, 3), torch.zeros(2, 3))) == 0.0


EOS, PAD = 2, 0


def test_truncation_after_first_eos():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 6, 7, 8, 9], [2, 5, 6, 7, 8], [5, 2, 2, 2, 2]])
    out, mask, has_eos = truncate_after_eos(ids, EOS, PAD)
    assert out.tolist() == [[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0], [5, 2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True, True]


def test_truncation_when_pad_is_eos_and_with_several_eos_ids():
    ids = torch.tensor([[5, 0, 0, 0], [5, 6, 7, 3]])
    _, mask, has_eos = truncate_after_eos(ids, 0, 0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    _, mask, has_eos = truncate_after_eos(ids, [0, 3], 0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert has_eos.tolist() == [True, True]


def test_truncation_of_zero_length_responses():
    out, mask, has_eos = truncate_after_eos(torch.zeros(3, 0, dtype=torch.long), EOS, PAD)
    assert out.shape == mask.shape == (3, 0)
    assert has_eos.tolist() == [False, False, False]


def test_position_ids_from_left_padded_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


# ---------------------------------------------------------------- score and KL-shaped rewards
def test_final_scores_clip_then_missing_eos_penalty():
    from alignment.ppo.rewards import final_scores

    scores = torch.tensor([7.0, -0.5, 2.0, -9.0])
    has_eos = torch.tensor([True, True, False, True])
    out = final_scores(scores, has_eos, clip=5.0, missing_eos_penalty=-1.0)
    assert out.tolist() == [5.0, -0.5, -1.0, -5.0]
    assert final_scores(scores, has_eos, clip=None, missing_eos_penalty=None).tolist() == scores.tolist()


def test_kl_shaped_rewards_hand_computed():
    from alignment.ppo.rewards import kl_shaped_rewards

    # beta 0.5; row 0 has 3 valid tokens, row 1 has 1, row 2 none
    kl = torch.tensor([[0.2, -0.4, 1.0, 9.0], [2.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    rewards, non_score = kl_shaped_rewards(torch.tensor([1.0, 3.0, 5.0]), kl, mask, beta=0.5)
    torch.testing.assert_close(non_score, torch.tensor([[-0.1, 0.2, -0.5, 0], [-1.0, 0, 0, 0], [0.0, 0, 0, 0]]))
    # the score lands on the last valid token; the empty row gets nothing
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 0.2, 0.5, 0], [2.0, 0, 0, 0], [0.0, 0, 0, 0]]))


def test_gain_summary_reports_greedy_and_sampled_gold_gains_with_paired_cis():
    from alignment.ppo.held_out import gain_summary

    start = {"eval/gold": 0.5, "eval/gold_sampled": 0.4, "_gold": [0.5, 0.5, 0.5, 0.5], "_gold_sampled": [0.25, 0.5, 0.5, 0.35]}
    final = {"eval/gold": 0.5, "eval/gold_sampled": 0.6, "_gold": [0.5, 0.5, 0.5, 0.5], "_gold_sampled": [0.5, 0.75, 0.5, 0.65]}
    summary = gain_summary(final, start, samples=500)
    assert not any(k.startswith("_") for k in summary)
    assert summary["gold_gain"] == 0.0 and summary["gold_gain_ci95"] == [0.0, 0.0]
    assert summary["gold_sampled_gain"] == pytest.approx(0.2)  # paired differences 0.25, 0.25, 0, 0.3
    lo, hi = summary["gold_sampled_gain_ci95"]
    assert 0.0 <= lo < 0.2 < hi <= 0.3
    assert summary["start/gold_sampled"] == 0.4
