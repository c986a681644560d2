"""`rlhf reward` and `rlhf reward-eval`."""
