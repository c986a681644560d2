"""PPO with KL control against a frozen reference: our own actor-critic implementation.

The math lives in small modules named for their concept, each testable by hand:
`masks` (masked statistics, EOS truncation), `gae` (advantages), `kl` (estimators and the
adaptive controller), `losses` (clipped surrogate, clipped value loss, entropy). `rollout`
turns prompts into episodes, and `trainer` is the loop, which reads top to bottom in the
order of the algorithm.
"""
