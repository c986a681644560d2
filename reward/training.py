"""Reward-model training on TRL's RewardTrainer, with the four things it lacks.

TRL 1.16's RewardTrainer computes −log σ(r_c − r_r − margin) averaged over the batch and
reads the reward through transformers' pooling. We keep everything else it gives
(transformers Trainer: checkpoints, resume, TensorBoard, early stopping, LoRA through peft,
accelerate) and override only:

1. the loss: our `bradley_terry_loss`, which adds per-pair weights (rankings expanded to
   pairs weigh 1/C(K,2)) and soft targets (ties at ½), both of which TRL drops;
2. the reward read-out: `reward.encoding.sequence_rewards`, the same function scoring uses,
   so training and PPO read the reward at the same token (TRL's pooling skips a final EOS
   when pad == eos);
3. the batching: all comparisons of a prompt form one example and each distinct response
   is scored once (InstructGPT; `reward.comparisons.tokenize`), where TRL scores every
   pair's two sequences; and the prompt those responses share is read once, its key/value
   cache copied to each (`reward.encoding.shared_prefix_rewards`);
4. the held-out accuracy: the exact fraction of strict pairs ranked right (TRL averages
   per-batch means), which is the metric early stopping watches;
5. with LoRA on the last blocks only, the frozen blocks below run once per example, in the
   first epoch: later epochs start from their kept output (`TrunkStates`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from datasets import Dataset
from trl import RewardConfig as TRLRewardConfig
from trl import RewardTrainer

from alignment.models import warmup_arguments
from alignment.ppo.frozen_trunk import frozen_block_count
from reward.bradley_terry import bradley_terry_loss
from reward.encoding import PrefixBatch, PrefixTrunk, pad_sequences, prefix_trunk, sequence_rewards, shared_prefix_rewards


@dataclass
class PairCollator:
    """Every response of the batch's examples, and the pairs as indices into them (see
    `reward.comparisons.tokenize`), with margin, weight and target.

    `share_prefix`: each example's responses as its shared prompt prefix plus their own
    tokens (`PrefixBatch`), read by `shared_prefix_rewards`; else one right-padded batch of
    whole conversations. Same rewards either way; sharing read 3x fewer tokens on SmolLM2
    (bench/reward_prefix_sharing.py).
    """

    pad_token_id: int
    share_prefix: bool = True

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        seqs, pairs = [], []
        for e in examples:
            pairs += [[len(seqs) + c, len(seqs) + r] for c, r in e["pairs"]]
            seqs += e["input_ids"]
        if self.share_prefix:
            prefix = PrefixBatch.of([e["input_ids"] for e in examples], self.pad_token_id)
            batch = dict(vars(prefix))
        else:
            input_ids, attention_mask = pad_sequences(seqs, self.pad_token_id, "right")
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        batch["pairs"] = torch.tensor(pairs, dtype=torch.long)
        for key in ("margin", "weight", "target"):
            batch[key] = torch.tensor([float(v) for e in examples for v in e[key]], dtype=torch.float)
        if "index" in examples[0]:  # which training examples these are, for `TrunkStates`
            batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
        return batch


def indexed_dataset(examples: list[dict]) -> Dataset:
    """The examples as a Dataset, each with its position as `index`, by which `TrunkStates` keeps it."""
    return Dataset.from_list([dict(example, index=i) for i, example in enumerate(examples)])


def prefix_batch(inputs: dict[str, torch.Tensor]) -> PrefixBatch:
    return PrefixBatch(**{f.name: inputs[f.name] for f in fields(PrefixBatch)})


def batch_rewards(model, inputs: dict[str, torch.Tensor], trunk: Optional[PrefixTrunk] = None) -> torch.Tensor:
    """The reward of every response in a `PairCollator` batch, by whichever layout it has
    (from `trunk`'s hidden states up, when given: shared-prefix layout only)."""
    if "group" in inputs:
        return shared_prefix_rewards(model, prefix_batch(inputs), trunk)
    return sequence_rewards(model, inputs["input_ids"], inputs["attention_mask"])


class TrunkStates:
    """Each example's hidden states entering its first trainable block, kept from the epoch (or
    evaluation) that first read it, so that later ones run only the blocks that train.

    With LoRA on the last N of L blocks (`lora.last_layers`) the embeddings and the lower L - N
    blocks never change, so their output for an example is the same in every epoch. On the
    SmolLM2 recipe (N = 8 of 30, three epochs) that is 22 of the 30 blocks' forwards in two
    epochs of three. Kept unpadded per example (prefix [P, H], each suffix [S_i, H]) and padded
    again to whatever batch the example lands in; about 0.6 MB per prompt of 8 responses
    in fp32 on SmolLM2.
    """

    def __init__(self, blocks: int):
        self.blocks = blocks
        self.kept: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def for_batch(self, model, batch: PrefixBatch, index: torch.Tensor) -> PrefixTrunk:
        examples = index.tolist()
        if all(i in self.kept for i in examples):
            return self._assemble(batch, examples)
        trunk = prefix_trunk(model, batch, self.blocks)
        for g, i in enumerate(examples):
            width = int(batch.prefix_mask[g].sum())
            rows = (batch.group == g).nonzero().flatten().tolist()
            self.kept[i] = (trunk.prefix_hidden[g, batch.prefix_mask.shape[1] - width:].clone(),
                            [trunk.suffix_hidden[r, : int(batch.suffix_mask[r].sum())].clone() for r in rows])
        return trunk

    def _assemble(self, batch: PrefixBatch, examples: list[int]) -> PrefixTrunk:
        """The kept states laid out as `batch` is: prefixes left-padded, suffixes right-padded (pads zero,
        which the attention mask keeps every real position from reading)."""
        sample = self.kept[examples[0]][0]
        prefix = sample.new_zeros((*batch.prefix_ids.shape, sample.shape[-1]))
        suffix = sample.new_zeros((*batch.suffix_ids.shape, sample.shape[-1]))
        row = 0
        for g, i in enumerate(examples):
            kept_prefix, kept_suffixes = self.kept[i]
            if len(kept_prefix):
                prefix[g, -len(kept_prefix):] = kept_prefix
            for states in kept_suffixes:
                suffix[row, : len(states)] = states
                row += 1
        return PrefixTrunk(prefix, suffix, self.blocks)


class BradleyTerryTrainer(RewardTrainer):
    """TRL's RewardTrainer with weighted, tie-aware Bradley–Terry loss (see module docstring).

    `cache_frozen_trunk`: keep each example's hidden states below the first trainable block
    (`TrunkStates`, one store for the training set and one for the held-out set, which every
    periodic evaluation reads again) when the model's lower blocks are frozen and the batches
    share prompt prefixes; the examples then need an `index` column.
    """

    def __init__(self, *args, cache_frozen_trunk: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        blocks = frozen_block_count(self.model) if cache_frozen_trunk else 0
        self.trunk_states = {mode: TrunkStates(blocks) for mode in ("train", "eval")} if blocks else None

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # tokenized and grouped by `reward.comparisons.tokenize`

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "pairs", "margin", "weight", "target", "index"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        trunk = None
        if self.trunk_states is not None and "group" in inputs and "index" in inputs:
            trunk = self.trunk_states[mode].for_batch(model, prefix_batch(inputs), inputs["index"])
        rewards = batch_rewards(model, inputs, trunk)
        r_chosen, r_rejected = rewards[inputs["pairs"][:, 0]], rewards[inputs["pairs"][:, 1]]
        loss = bradley_terry_loss(
            r_chosen, r_rejected,
            margin=inputs["margin"], weight=inputs["weight"], target=inputs["target"],
            center_coefficient=self.args.center_rewards_coefficient,
        )
        with torch.no_grad():
            strict = inputs["target"] == 1.0
            # Not gather_for_metrics: it trims the last batch to the number of remaining
            # *examples* (prompt groups), but this tensor has one entry per *pair*, so it
            # kept only the first few pairs of the held-out set and early stopping chased noise.
            diff = (r_chosen - r_rejected)[strict].float()
            diff = self.accelerator.pad_across_processes(diff, pad_index=float("nan"))
            diff = self.accelerator.gather(diff)
            diff = diff[~diff.isnan()]
            # one entry per pair, so TRL's list mean in `log` is the exact accuracy
            self._metrics[mode]["accuracy"].extend(((diff > 0).float() + 0.5 * (diff == 0).float()).tolist())
            self._metrics[mode]["margin"].append(diff.mean().item() if diff.numel() else 0.0)
            self._metrics[mode]["mean_reward"].append(rewards.mean().item())
        return (loss, {"rewards": rewards}) if return_outputs else loss


def trl_args(cfg, output_dir: str, seed: int, n_train: int, has_eval: bool, bf16: bool = False,
             **overrides) -> TRLRewardConfig:
    """TRL RewardConfig from our recipe section (`alignment.recipe.reward.RewardConfig`); `bf16`: autocast."""
    steps_per_epoch = max(1, -(-n_train // cfg.batch_size))  # n_train counts prompt groups
    eval_steps = max(1, min(cfg.eval_steps, steps_per_epoch))
    kwargs = dict(
        output_dir=output_dir,
        seed=seed,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 64),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        **warmup_arguments(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        max_grad_norm=1.0,
        gradient_checkpointing=cfg.gradient_checkpointing,  # TRL's RewardConfig turns it on by default
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        max_length=None,  # over-long pairs are dropped and counted before training
        remove_unused_columns=True,
        prediction_loss_only=True,
        logging_steps=max(1, min(cfg.logging_steps, eval_steps)),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=has_eval,
        metric_for_best_model="eval_accuracy" if has_eval else None,
        greater_is_better=True,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        # not TRL's default (bf16 on): on a CPU that means autocast, 11x slower per training step on an
        # AVX2-only core (no AVX512-bf16/AMX); the caller decides from model.dtype, as SFT and DPO do
        bf16=bf16,
    )
    kwargs.update(overrides)
    return TRLRewardConfig(**kwargs)
