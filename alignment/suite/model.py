"""The tiny Llama base model, created locally with a seeded random initialisation.

The weights are drawn from a `torch.Generator` seeded by the recipe, parameter by parameter
in name order, so the same seed gives identical weights on any machine and the process's
global RNG is left untouched (construction runs inside `torch.random.fork_rng`).
"""

from __future__ import annotations

from alignment.recipe.suite import TinyModelConfig


def create_model(config: TinyModelConfig, tokenizer, seed: int):
    """A randomly initialised `LlamaForCausalLM` whose special ids match `tokenizer`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        initializer_range=0.02,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, llama.initializer_range, generator=generator)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, max_new_tokens=32
    )
    return model
