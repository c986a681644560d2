"""PPO with KL control against a frozen reference (Ziegler et al. 2019; Ouyang et al. 2022).

The loop reads top to bottom in the order of the algorithm, like cleanrl's ppo.py:

    for each iteration:
        1. rollout     sample responses to a batch of prompts; logprobs, reference logprobs, values
                       (logprobs recomputed; the sampler's own kept to log how far apart they are)
                       (with LoRA on the top blocks, the frozen blocks below run once, shared by all)
                       (values: from the separate critic, or from the actor's own forward when
                       the value head sits on its trunk, ppo.critic=shared)
        2. score       reward model -> normalise -> clip -> missing-EOS penalty
        3. shape       per-token reward -beta*KL, plus the score on the last token
        4. GAE         advantages and returns; whiten advantages over valid tokens
        5. learn       epochs over minibatches: clipped surrogate + vf_coef * clipped value loss
        6. bookkeeping adapt beta, log, guard against NaN and KL blow-up, checkpoint, evaluate

Everything runs under accelerate: one CPU process by default, several processes (DDP) with
`accelerate launch`. Batch sizes in the recipe are global and split over processes.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from alignment.data.files import read_rows
from alignment.errors import UserError
from alignment.interrupt import checkpoint_written
from alignment.models import load_tokenizer, pick_device, pick_dtype, save_model, training_precision
from alignment.ppo import checkpoint as ckpt
from alignment.ppo.actor_critic import check_critic_tokenizer, load_actor, load_critic, load_reference, reference_mode
from alignment.ppo.frozen_trunk import (
    TrunkCache,
    capture_block_input,
    decoder_of,
    frozen_block_count,
    lower_hidden,
    same_lower_blocks,
    split_matches_whole,
)
from alignment.ppo.gae import compute_gae
from alignment.ppo.held_out import as_logged, evaluate_policy, gain_summary, load_held_out
from alignment.ppo.kl import AdaptiveKLController, FixedKLController, kl_estimate
from alignment.ppo.losses import policy_loss, value_loss
from alignment.ppo.masks import masked_mean, masked_sum, masked_whiten, truncate_after_eos
from alignment.ppo.metrics_log import MetricsLogger, read_metrics
from alignment.ppo.ptx import PtxBatches, ptx_loss
from alignment.ppo.rewards import final_scores, kl_shaped_rewards
from alignment.ppo.rollout import (
    Episodes,
    RewardFunction,
    decode_responses,
    encode_prompts,
    eos_ids,
    fed_inputs,
    forward_in_update_shapes,
    left_pad,
    padding_bounds,
    padding_extent,
    policy_forward,
    policy_value_forward,
    sample_responses,
    value_forward,
)
from alignment.recipe import Recipe
from alignment.run_dir import RunDir, resolve_data_path
from alignment.sft import demonstration_rows
from reward.scoring import RewardScorer, RewardStats

STAGE = "ppo"


class TrainingStopped(UserError):
    """A guard stopped the run (non-finite value, KL blow-up); the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- set-up helpers
def _check_sizes(recipe: Recipe, world: int) -> tuple[int, int, int]:
    """Per-process (rollout, minibatch, micro-batch) sizes, or an error naming the key."""
    cfg = recipe.ppo
    for key, value in (("rollout_batch_size", cfg.rollout_batch_size), ("mini_batch_size", cfg.mini_batch_size)):
        if value % world:
            raise UserError(f"ppo.{key}={value} must be divisible by the {world} processes")
    if cfg.rollout_batch_size % cfg.mini_batch_size:
        raise UserError(f"ppo.rollout_batch_size={cfg.rollout_batch_size} must be a multiple of ppo.mini_batch_size={cfg.mini_batch_size}")
    mini = cfg.mini_batch_size // world
    if mini % cfg.gradient_accumulation_steps:
        raise UserError(
            f"ppo.mini_batch_size per process ({mini}) must be divisible by ppo.gradient_accumulation_steps="
            f"{cfg.gradient_accumulation_steps}"
        )
    if cfg.max_new_tokens < 1:
        raise UserError(f"ppo.max_new_tokens={cfg.max_new_tokens}: responses need at least one token")
    return cfg.rollout_batch_size // world, mini, mini // cfg.gradient_accumulation_steps


def _load_prompts(recipe: Recipe, tokenizer) -> tuple[list, list[list[int]]]:
    """Training prompts and their chat-templated ids; prompts over max_prompt_length are dropped."""
    path = resolve_data_path(recipe, recipe.ppo.prompts)
    rows = read_rows(path)
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise UserError(f"{path}: row {i + 1}: field 'prompt': missing (PPO rolls out prompts)")
    prompts = [row["prompt"] for row in rows]
    encoded = encode_prompts(tokenizer, prompts)
    keep = [i for i, ids in enumerate(encoded) if len(ids) <= recipe.ppo.max_prompt_length]
    if not keep:
        raise UserError(f"{path}: every prompt is longer than ppo.max_prompt_length={recipe.ppo.max_prompt_length} tokens")
    if len(keep) < len(rows):
        print(f"ppo: {len(rows) - len(keep)} of {len(rows)} prompts are longer than ppo.max_prompt_length; skipped")
    return [prompts[i] for i in keep], [encoded[i] for i in keep]


def _prompt_indices(n_prompts: int, iteration: int, batch: int, rank: int, local: int, seed: int) -> list[int]:
    """This process's prompts for `iteration`: a seeded reshuffle per pass over the data.

    A pure function of the iteration, so a resumed run sees exactly the prompts the killed
    one would have seen.
    """
    perms: dict[int, list[int]] = {}
    out = []
    for k in range(iteration * batch + rank * local, iteration * batch + (rank + 1) * local):
        epoch, pos = divmod(k, n_prompts)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        out.append(perms[epoch][pos])
    return out


def random_reward(prompts: Sequence, responses: Sequence[str], seed: int = 0) -> torch.Tensor:
    """Ablation reward: a fixed N(0,1) draw per (prompt, response) text, unrelated to quality."""
    import hashlib

    out = []
    for p, r in zip(prompts, responses):
        digest = hashlib.sha256(f"{seed}|{p}|{r}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        out.append(float(torch.randn((), generator=g)))
    return torch.tensor(out)


def make_reward_fn(recipe: Recipe, reward_path: str, device) -> RewardFunction:
    if recipe.ppo.reward == "random":
        return lambda prompts, responses: random_reward(prompts, responses, recipe.seed)

    scorer = RewardScorer.from_pretrained(reward_path, device=device, dtype=recipe.model.dtype)
    return lambda prompts, responses: scorer.score(prompts, responses, normalize=True, batch_size=64)


def fresh_accelerator(gradient_accumulation_steps: int, mixed_precision: str = "no"):
    """An Accelerator configured by this recipe (and `accelerate launch`) alone, not by what ran before.

    accelerate keeps its settings, mixed precision among them, in process-wide singletons. A
    transformers Trainer earlier in the same process (in `rlhf run`, the reward stage's: TRL's
    RewardConfig turns bf16 on) leaves bf16 there, and PPO then rolled out and learned under
    CPU bf16 autocast in `rlhf run` but in float32 in `rlhf ppo` or after a resume: two
    results from one recipe. Trainers reset that state themselves (TrainingArguments does); our
    loop does it here. PartialState, the process group under `accelerate launch`, is kept, and
    `mixed_precision` is the recipe's ('bf16' for `ppo.dtype=bfloat16` on a CPU: see `training_precision`).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(gradient_accumulation_steps=gradient_accumulation_steps, cpu=not torch.cuda.is_available(),
                       mixed_precision=mixed_precision)


def _adamw(groups: list[dict], accelerator, **kwargs) -> torch.optim.AdamW:
    """AdamW with its fused kernel (one pass over all parameters per step, on CPU and CUDA),
    like transformers' default optimiser (adamw_torch_fused): the same update, several times
    less time per step than the per-tensor loop. Sharded set-ups (FSDP, DeepSpeed) and
    parameters the kernel does not take keep torch's default implementation."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            pass
    return torch.optim.AdamW(groups, **kwargs)


def _all_finite(accelerator, named: dict[str, torch.Tensor]) -> Optional[str]:
    """Name of the first non-finite tensor on any process (a collective call), or None."""
    bad = torch.tensor([0.0 if torch.isfinite(t).all() else 1.0 for t in named.values()], device=accelerator.device)
    bad = accelerator.reduce(bad, "sum") if accelerator.num_processes > 1 else bad
    for name, flag in zip(named, bad.tolist()):
        if flag:
            return name
    return None


# ----------------------------------------------------------------------------- the loop
def train_ppo(
    recipe: Recipe,
    reward_fn: Optional[RewardFunction] = None,
    force: bool = False,
    max_iterations: Optional[int] = None,
    accelerator=None,
) -> dict:
    """Run (or resume) PPO; returns the final metrics. `max_iterations` stops early, as a kill would."""
    from accelerate.utils import set_seed
    from trl.models.utils import unwrap_model_for_generation

    cfg = recipe.ppo
    run = RunDir(recipe)
    out = run.stage_dir(STAGE)
    if run.is_done(STAGE) and not force:
        print(f"ppo: {out} is complete; skipping (use --force to retrain)")
        return run.read_metrics(STAGE)
    if force and run.is_done(STAGE):
        run.clear(STAGE)
        out = run.stage_dir(STAGE)
    precision = training_precision(cfg.dtype or recipe.model.dtype, pick_device())
    accelerator = accelerator or fresh_accelerator(cfg.gradient_accumulation_steps,
                                                   "bf16" if precision.bf16_autocast else "no")
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    local_batch, local_mini, micro = _check_sizes(recipe, world)
    if cfg.rollout_engine == "vllm":  # before any model is loaded
        _check_vllm(world)
    set_seed(recipe.seed, device_specific=True)  # each process samples differently

    # --- models: actor (+LoRA, + value head if shared), frozen reference (or the adapter switched off),
    # critic (None when shared), reward
    policy_path = cfg.policy or str(run.stage_dir("sft", create=False))
    reward_path = cfg.reward_model or str(run.stage_dir("reward", create=False))
    has_reward_model = Path(reward_path, "config.json").is_file()
    if reward_fn is None and cfg.reward == "model" and not has_reward_model:
        raise UserError(f"no reward model at {reward_path}: run `rlhf reward` first or set ppo.reward_model")
    separate = cfg.critic == "separate"
    if separate and cfg.critic_init == "reward" and not has_reward_model:
        raise UserError(f"ppo.critic_init=reward, but no reward model at {reward_path} (train it, or set ppo.critic_init=policy)")
    tokenizer = load_tokenizer(policy_path, recipe.model, padding_side="left")
    if separate and cfg.critic_init == "reward":
        check_critic_tokenizer(reward_path, tokenizer)
    if not separate:
        accelerator.print("ppo: critic=shared: a value head (zeros) on the actor's trunk; ppo.critic_init is ignored")
    actor = load_actor(policy_path, recipe.model, cfg, device, precision.weights)
    reference = load_reference(policy_path, recipe.model, cfg, device, precision.weights)
    critic = None
    if separate and cfg.critic_init == "reward":  # on the normalised scale, as the scores that make the returns
        critic = load_critic(reward_path, recipe.model, cfg, device, precision.weights, RewardStats.load(reward_path))
    elif separate:
        critic = load_critic(policy_path, recipe.model, cfg, device, precision.weights)
    reward_fn = reward_fn or make_reward_fn(recipe, reward_path, device)
    eos, pad = eos_ids(tokenizer, actor), tokenizer.pad_token_id
    prompts, encoded = _load_prompts(recipe, tokenizer)
    eval_rows = load_held_out(recipe, cfg.eval_prompts, cfg.eval_max_prompts, STAGE)
    ptx_batches = _ptx_batches(recipe, run, tokenizer, micro, device) if cfg.ptx_coef > 0 else None

    if separate:
        actor_params = [p for p in actor.parameters() if p.requires_grad]
        critic_params = [p for p in critic.parameters() if p.requires_grad]
    else:  # critic_learning_rate is the value head's
        actor_params, critic_params = actor.trunk_parameters(), list(actor.value_head.parameters())
    optimizer = _adamw(
        [
            {"params": actor_params, "lr": cfg.learning_rate},
            {"params": critic_params, "lr": cfg.critic_learning_rate or cfg.learning_rate},
        ],
        accelerator,
        eps=1e-5,  # cleanrl's Adam epsilon for PPO
    )
    if separate:
        actor, critic, optimizer = accelerator.prepare(actor, critic, optimizer)
    else:
        actor, optimizer = accelerator.prepare(actor, optimizer)
    trained = (actor, critic) if separate else (actor,)
    kl_ctl = (
        AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl else FixedKLController(cfg.kl_coef)
    )
    state = ckpt.LoopState()
    accelerator.register_for_checkpointing(kl_ctl, state)
    resume_from = ckpt.latest_checkpoint(out)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        accelerator.print(f"ppo: resuming from {resume_from} (iteration {state.iteration}, beta {kl_ctl.value:.4g})")
    logger = MetricsLogger(out, cfg.report_to, enabled=accelerator.is_main_process)
    if resume_from is not None and accelerator.is_main_process:
        logger.truncate(after_step=state.iteration)  # lines logged after the checkpoint are redone
    n_iterations = max(cfg.total_episodes // cfg.rollout_batch_size, 1)
    unwrapped = accelerator.unwrap_model(actor)
    reference_ctx = lambda: reference_mode(unwrapped, reference)
    # vLLM as the sampler: started after the models (it freezes torch's thread count), given the
    # actor's weights now (a resumed run's are not the folder's) and after every optimiser phase
    sampler = _vllm_sampler(recipe, policy_path, device, out) if cfg.rollout_engine == "vllm" else None
    if sampler is not None:
        sampler.push_weights(unwrapped)
    # with LoRA on the top blocks, the frozen ones below run once per rollout (alignment/ppo/frozen_trunk.py)
    trunk_blocks, critic_from = _shared_trunk(cfg, unwrapped, accelerator.unwrap_model(critic) if separate else None,
                                              encoded, pad, device, accelerator.print)

    def evaluate(tag: int) -> dict:
        """Gold and KL on held-out prompts (main process); all processes wait for it."""
        result: dict = {}
        if eval_rows and accelerator.is_main_process:
            with accelerator.autocast():
                metrics, details = evaluate_policy(
                    unwrapped, reference_ctx, tokenizer, eval_rows, cfg.max_new_tokens, cfg.temperature,
                    reward_fn=reward_fn, seed=recipe.seed,
                )
            result = as_logged(metrics, details)
            logger.log(tag, {k: v for k, v in result.items() if not k.startswith("_")})
        accelerator.wait_for_everyone()
        return result

    baseline = _read_baseline(out) if resume_from is not None else None
    if baseline is None:
        baseline = evaluate(state.iteration)
        if accelerator.is_main_process and baseline:
            ckpt.write_json_atomic(out / "baseline_eval.json", baseline)
    stop_at = n_iterations if max_iterations is None else min(n_iterations, state.iteration + max_iterations)
    bar = tqdm(range(state.iteration, stop_at), desc="ppo", unit="iter", disable=not accelerator.is_local_main_process,
               initial=state.iteration, total=n_iterations)
    last = None
    for iteration in bar:
        t_start = time.perf_counter()

        # ---- 1. rollout: sample, truncate after the first EOS, score the tokens under each model
        index = _prompt_indices(len(prompts), iteration, cfg.rollout_batch_size, rank, local_batch, recipe.seed)
        batch_prompts = [prompts[i] for i in index]
        query_ids, query_mask = left_pad([encoded[i] for i in index], pad, device)
        actor.eval()  # dropout is off anyway; eval() also turns off gradient checkpointing's checks
        # under the update's autocast (if any), so that sampling, recomputation and update share numerics
        with torch.no_grad(), accelerator.autocast():
            if sampler is not None:  # vLLM draws the tokens; every logprob below is still the training model's
                raw, sampler_logprobs = sampler.sample(query_ids, query_mask, cfg.max_new_tokens, cfg.temperature,
                                                       eos, pad, cfg.top_k, cfg.top_p)
            else:
                with unwrap_model_for_generation(actor, accelerator) as gen_model:
                    raw, sampler_logprobs = sample_responses(gen_model, query_ids, query_mask, cfg.max_new_tokens,
                                                             cfg.temperature, eos, pad, cfg.top_k, cfg.top_p)
            response_ids, response_mask, has_eos = truncate_after_eos(raw, eos, pad)
            tensors = (query_ids, query_mask, response_ids, response_mask)
            bounds = padding_bounds(query_mask, response_mask)  # read back once, for trimming minibatches
            # the frozen lower blocks' hidden states, once for every forward below and in the update
            # (and, for a critic that trains fewer blocks than the actor adapts, those entering its first)
            trunks = critic_trunks = None
            if trunk_blocks and response_ids.shape[1]:
                widths = (local_batch, query_ids.shape[1], response_ids.shape[1])
                trunks = TrunkCache(trunk_blocks, *widths)
                critic_trunks = TrunkCache(critic_from, *widths) if critic_from > trunk_blocks else None

            def score_tokens(rows, first, *t):
                """(logprobs, values, reference logprobs) of one micro-batch."""
                trunk = (trunks.keep(rows, first, lower_hidden(unwrapped, *fed_inputs(*t), trunk_blocks))
                         if trunks is not None else None)
                if not separate:  # one forward of the actor gives both
                    lp, v = policy_value_forward(actor, *t, cfg.temperature, trunk=trunk)[:2]
                else:
                    lp = policy_forward(actor, *t, cfg.temperature, trunk=trunk)[0]
                with reference_ctx() as ref_model, capture_block_input(
                        unwrapped, critic_from if critic_trunks is not None else None) as entering:
                    ref = policy_forward(ref_model, *t, cfg.temperature, trunk=trunk)[0]
                if separate:
                    critic_trunk = (critic_trunks.keep(rows, first, entering[0]) if critic_trunks is not None
                                    else trunk if critic_from else None)
                    v = value_forward(critic, *t, trunk=critic_trunk)
                return lp, v, ref

            # All three in the first epoch's micro-batches, in the shapes the update gives them: a matmul's
            # rounding depends on its batch's shape (on an AVX2 CPU even in fp32), so only equal shapes make
            # the first ratio exactly 1, and KL exactly 0 while the policy is the reference.
            first_order = torch.randperm(local_batch, device=device)
            logprobs, values, ref_logprobs = forward_in_update_shapes(score_tokens, first_order, bounds, micro, *tensors)
        texts = decode_responses(tokenizer, response_ids, response_mask)

        # ---- 2. score: normalised reward-model score, clipped, missing-EOS penalty
        raw_scores = reward_fn(batch_prompts, texts).to(device).float()
        scores = final_scores(raw_scores, has_eos, cfg.reward_clip, cfg.missing_eos_penalty)
        mask = response_mask.float()
        episodes = Episodes(query_ids, query_mask, response_ids, response_mask, has_eos, logprobs, ref_logprobs,
                            values * mask, scores)
        t_rollout = time.perf_counter() - t_start

        # ---- 3. KL-shaped rewards: -beta * KL per token (unless KL is a loss term), score on the last token
        beta = kl_ctl.value
        kl_tokens = kl_estimate(logprobs, ref_logprobs, cfg.kl_estimator) * mask
        kl_in_reward = kl_tokens if cfg.kl_in == "reward" else torch.zeros_like(kl_tokens)
        rewards, non_score = kl_shaped_rewards(scores, kl_in_reward, mask, beta)

        # ---- 4. GAE; advantages whitened over valid tokens only
        advantages, returns = compute_gae(rewards, episodes.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        bad = _all_finite(accelerator, {"score": scores, "logprobs": logprobs, "ref_logprobs": ref_logprobs,
                                        "values": values, "advantages": advantages})
        if bad:
            _stop(f"{bad} is not finite", iteration, out)

        # ---- 5. learn: epochs over shuffled minibatches, gradient accumulation over micro-batches
        t_learn = time.perf_counter()
        for model in trained:
            model.train()
        train_actor = iteration >= cfg.critic_warmup_steps
        # shared warm-up: the value head alone learns; DDP's reduction, which would wait for the
        # trunk's gradients, is off (no_sync) and the head's gradients are averaged by hand
        head_only = not (separate or train_actor)
        stats: dict[str, list[float]] = {}
        first_minibatch: dict[str, float] = {}
        for epoch in range(cfg.ppo_epochs):
            order = first_order if epoch == 0 else torch.randperm(local_batch, device=device)
            order_cpu = order.cpu()
            for mb_start in range(0, local_batch, local_mini):
                for mc_start in range(mb_start, mb_start + local_mini, micro):
                    idx = order[mc_start : mc_start + micro]
                    extent = padding_extent(bounds[order_cpu[mc_start : mc_start + micro]])
                    mb = episodes.select(idx).trimmed(extent)  # without the columns that are padding in every row
                    trunk = trunks.read(idx, *extent) if trunks is not None else None
                    critic_trunk = (critic_trunks.read(idx, *extent) if critic_trunks is not None
                                    else trunk if critic_from else None)
                    width = mb.response_ids.shape[1]
                    mb_mask, mb_adv, mb_ret = mask[idx, :width], advantages[idx, :width], returns[idx, :width]
                    with accelerator.accumulate(*trained), (accelerator.no_sync(actor) if head_only else nullcontext()):
                        if ptx_batches is not None and train_actor:
                            # PPO-ptx: the SFT loss's gradient accumulates locally first (no_sync), and
                            # DDP averages it with the PPO gradient in the synchronised backward below
                            with accelerator.no_sync(actor):
                                lm_loss = ptx_loss(actor, next(ptx_batches))
                                accelerator.backward(cfg.ptx_coef * lm_loss)
                            _append(stats, {"loss/ptx": lm_loss})
                        inputs = (mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask)
                        if separate:
                            new_values = value_forward(critic, *inputs, trunk=critic_trunk)
                        else:  # shared trunk: one forward of the actor gives logprobs, entropy and values
                            new_logprobs, new_values, entropy = policy_value_forward(
                                actor, *inputs, cfg.temperature, with_entropy=train_actor,
                                entropy_grad=cfg.entropy_coef != 0, train_trunk=train_actor, trunk=trunk)
                        vf_loss, vf_stats = value_loss(new_values, mb.values, mb_ret, mb_mask, cfg.cliprange_value)
                        terms = [cfg.vf_coef * vf_loss]  # summed into one backward below
                        if separate:
                            # The critic's loss goes backward before the actor's forward. The two models share
                            # no parameter, so each gets the gradient the summed loss would give it, and the
                            # critic's activations are freed before the actor's are made.
                            accelerator.backward(terms.pop())
                        losses = {"value": vf_loss.detach()}
                        if train_actor:
                            if separate:
                                new_logprobs, entropy = policy_forward(actor, *inputs, cfg.temperature, with_entropy=True,
                                                                       entropy_grad=cfg.entropy_coef != 0, trunk=trunk)
                            pg_loss, pg_stats = policy_loss(new_logprobs, mb.logprobs, mb_adv, mb_mask, cfg.cliprange)
                            mean_entropy = masked_mean(entropy, mb_mask)
                            actor_loss = pg_loss - cfg.entropy_coef * mean_entropy
                            if cfg.kl_in == "loss":
                                actor_loss = actor_loss + beta * masked_mean(kl_estimate(new_logprobs, mb.ref_logprobs, cfg.kl_estimator), mb_mask)
                            terms.append(actor_loss)
                            losses["policy"] = actor_loss.detach()
                            _append(stats, {"loss/policy": pg_loss, "policy/clipfrac": pg_stats["clipfrac"],
                                            "policy/approx_kl": pg_stats["approx_kl"], "policy/ratio": pg_stats["ratio"],
                                            "policy/entropy": mean_entropy})
                            if epoch == 0 and mc_start == 0:  # the PPO invariant: nothing has moved yet
                                first_minibatch = {"policy/first_ratio": float(pg_stats["ratio"]),
                                                   "policy/first_approx_kl": float(pg_stats["approx_kl"])}
                        if terms:  # the actor's loss; shared: + vf_coef * vf_loss
                            accelerator.backward(sum(terms))
                        _append(stats, {"loss/value": vf_loss, "value/clipfrac": vf_stats["clipfrac"],
                                        "loss/total": cfg.vf_coef * losses["value"] + losses.get("policy", 0.0)})
                        # one check (one collective) for both losses, before any optimiser step uses them
                        bad = _all_finite(accelerator, losses)
                        if bad:
                            _stop(f"the {bad} loss is not finite (epoch {epoch})", iteration, out)
                        if accelerator.sync_gradients:
                            if head_only:
                                _average_gradients(accelerator, accelerator.unwrap_model(actor).value_head.parameters())
                            for model in trained:
                                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
        t_learn = time.perf_counter() - t_learn
        t_push = time.perf_counter()
        if sampler is not None and train_actor:  # the next rollout samples from the policy just updated
            sampler.push_weights(unwrapped)
        t_push = time.perf_counter() - t_push

        # ---- 6. bookkeeping: adapt beta, log, guard, checkpoint, evaluate
        seq_kl = masked_sum(kl_estimate(logprobs, ref_logprobs, "k1"), mask, dim=1)
        seq_kl3 = masked_sum(kl_estimate(logprobs, ref_logprobs, "k3"), mask, dim=1)
        n_tokens = mask.sum()
        episode_stats = {
            "objective/score": scores.mean(),
            "objective/raw_score": raw_scores.mean(),
            "objective/non_score_reward": non_score.sum(dim=1).mean(),
            "objective/rlhf_reward": (scores + non_score.sum(dim=1)).mean(),
            "objective/kl": seq_kl.mean(),
            "objective/kl_k3": seq_kl3.mean(),
            # the policy sampled vs the policy PPO optimises: 0 up to numerics unless top-k/top-p is on (the
            # forced pads after EOS may have log pi = -inf under top-k, so they are zeroed, not multiplied)
            "rollout/sampler_logprob_gap": masked_mean((sampler_logprobs - logprobs).abs().masked_fill(mask == 0, 0.0), mask),
            "response/length": mask.sum(dim=1).mean(),
            "response/eos_rate": has_eos.float().mean(),
            "speed/rollout_tokens_per_s": n_tokens / max(t_rollout, 1e-9),
            "speed/train_tokens_per_s": n_tokens * cfg.ppo_epochs / max(t_learn, 1e-9),
        }
        for name, values_ in stats.items():
            episode_stats[name] = torch.stack(values_).mean()
        names = list(episode_stats)
        reduced = torch.stack([torch.as_tensor(episode_stats[n], dtype=torch.float32, device=device) for n in names])
        if world > 1:
            reduced = accelerator.reduce(reduced, "mean")
        metrics = dict(zip(names, reduced.tolist()))
        metrics["speed/rollout_tokens_per_s"] *= world  # tokens over all processes per second
        metrics["speed/train_tokens_per_s"] *= world
        kl_ctl.update(metrics["objective/kl"], cfg.rollout_batch_size)
        state.iteration = iteration + 1
        state.episodes += cfg.rollout_batch_size
        elapsed = time.perf_counter() - t_start
        state.wall_s += elapsed
        metrics.update(first_minibatch)
        metrics.update({"objective/beta": beta, "episode": state.episodes, "iteration": state.iteration,
                        "time/iteration_s": elapsed, "speed/episodes_per_s": cfg.rollout_batch_size / elapsed})
        if sampler is not None:
            metrics["time/weight_push_s"] = t_push
        logger.log(state.iteration, metrics)
        bar.set_postfix(score=f"{metrics['objective/score']:.3f}", kl=f"{metrics['objective/kl']:.2f}")
        if cfg.sample_every and (iteration % cfg.sample_every == 0) and accelerator.is_main_process:
            logger.table(state.iteration, "samples", [
                {"prompt": p if isinstance(p, str) else p[-1]["content"], "response": t, "score": float(s),
                 "kl": float(k), "eos": bool(e)}
                for p, t, s, k, e in list(zip(batch_prompts, texts, scores.tolist(), seq_kl.tolist(), has_eos.tolist()))[:8]
            ])
        if cfg.kl_stop is not None and metrics["objective/kl"] > cfg.kl_stop:
            _stop(f"KL to the reference is {metrics['objective/kl']:.2f} per sequence, past ppo.kl_stop={cfg.kl_stop} "
                  "(lower the learning rate or raise ppo.kl_coef)", iteration, out)
        if not math.isfinite(metrics["objective/kl"]):
            _stop("objective/kl is not finite", iteration, out)
        last = metrics
        if cfg.eval_every and state.iteration % cfg.eval_every == 0 and state.iteration < n_iterations:
            evaluate(state.iteration)
        if (cfg.save_every and state.iteration % cfg.save_every == 0) or state.iteration == stop_at:
            ckpt.save_checkpoint(accelerator, out, state, {"beta": kl_ctl.value})
            checkpoint_written(STAGE)
    bar.close()

    if state.iteration < n_iterations:  # stopped early on purpose (max_iterations): not done
        logger.close()
        return last or {}
    if last is None:  # resumed after the last iteration (killed while finishing): its metrics are on disk
        last = next((m for m in reversed(read_metrics(out / "metrics.jsonl")) if "iteration" in m), None)
    final = evaluate(state.iteration)
    summary = _summary(recipe, final, baseline, last, state, kl_ctl.value)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(actor)
        if separate:
            accelerator.unwrap_model(critic).save_pretrained(out / "critic")
        else:  # the policy folder holds the plain LM; the head goes to critic/value_head.safetensors
            model.save_value_head(out / "critic")
            model = model.policy
        if cfg.lora.enabled:
            model = model.merge_and_unload()  # a plain transformers folder, like every other stage's
        save_model(model, tokenizer, out)
        run.write_metrics(STAGE, summary)
        run.mark_done(STAGE, {"iterations": state.iteration, "episodes": state.episodes, "processes": world})
    accelerator.wait_for_everyone()
    logger.close()
    return summary


# ----------------------------------------------------------------------------- small pieces of the loop
def _append(stats: dict[str, list], values: dict[str, torch.Tensor]) -> None:
    for name, value in values.items():
        stats.setdefault(name, []).append(value.detach().float())


def _average_gradients(accelerator, params) -> None:
    """What DDP does in backward, by hand: each gradient becomes its mean over the processes."""
    if accelerator.num_processes > 1:
        for p in params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, "mean")


def _stop(reason: str, iteration: int, out: Path) -> None:
    last = ckpt.latest_checkpoint(out)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    raise TrainingStopped(f"PPO stopped at iteration {iteration + 1}: {reason}; {kept}")


def _shared_trunk(cfg, actor, critic, encoded: list[list[int]], pad: int, device, say) -> tuple[int, int]:
    """(frozen lower blocks the actor's forwards share, 0 for none; the block the separate critic's forwards
    start from, 0 when it runs whole).

    Only a LoRA actor has frozen blocks to share, and only a decoder whose split forward gives the
    whole one's hidden states (checked here on the first prompts) is split. A critic starts from the
    shared trunk when its frozen blocks reach it, or from the reference's hidden state entering its
    first trainable block when they reach further; either way only if they hold the reference's weights.
    """
    blocks = frozen_block_count(actor) if cfg.share_frozen_trunk and cfg.lora.enabled else 0
    if not blocks:
        return 0, 0
    ids, mask = left_pad(encoded[:4], pad, device)
    if not split_matches_whole(actor, ids, mask, blocks):
        say(f"ppo: {type(actor).__name__} gives other hidden states when split at block {blocks}; "
            "every forward runs the whole model (ppo.share_frozen_trunk has no effect)")
        return 0, 0
    critic_from = 0
    if critic is not None:
        frozen = frozen_block_count(critic)
        # a critic training only its head still starts at its last block: the reference's forward shows
        # the hidden state entering a block, and none follows the last
        start = blocks if frozen <= blocks else min(frozen, len(decoder_of(actor).layers) - 1)
        if frozen >= blocks and same_lower_blocks(actor, critic, start) and split_matches_whole(critic, ids, mask, start):
            critic_from = start
    say(f"ppo: blocks 0-{blocks - 1} are frozen (LoRA): run once per rollout and shared by the actor and the reference"
        + (f"; the critic starts at block {critic_from}" + (" from the reference's hidden states" if critic_from > blocks
                                                            else "") if critic_from else ""))
    return blocks, critic_from


def _check_vllm(world: int) -> None:
    """ppo.rollout_engine=vllm: the extra is installed (one line naming it if not), and one process runs."""
    from alignment.vllm_engine import require_vllm

    require_vllm()
    if world > 1:
        raise UserError(f"ppo.rollout_engine=vllm runs in one process; this run has {world} (use ppo.rollout_engine=hf)")


def _vllm_sampler(recipe: Recipe, policy_path: str, device, out: Path):
    """The colocated vLLM engine for `ppo.rollout_engine=vllm`, in the rollout's dtype (bf16 for bfloat16);
    its cache in the run folder (`.cache/vllm`), not the model folder and not the home folder."""
    from alignment.vllm_engine import VLLMSampler

    cfg = recipe.ppo
    return VLLMSampler(policy_path, pick_dtype(cfg.dtype or recipe.model.dtype, device),
                       max_model_len=cfg.max_prompt_length + cfg.max_new_tokens, seed=recipe.seed,
                       cache_dir=out.parent / ".cache" / "vllm", max_num_seqs=cfg.rollout_batch_size)


def _ptx_batches(recipe: Recipe, run: RunDir, tokenizer, batch_size: int, device):
    rows, origin = demonstration_rows(recipe, run)
    print(f"ppo: PPO-ptx mixes in the SFT loss on {len(rows)} demonstrations from {origin}")
    return iter(PtxBatches(tokenizer, rows, batch_size, recipe.model.max_length, recipe.seed, device))


def _read_baseline(out: Path) -> Optional[dict]:
    import json

    path = out / "baseline_eval.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _summary(recipe: Recipe, final: dict, baseline: Optional[dict], last: Optional[dict], state, beta: float) -> dict:
    """metrics.json: the final held-out figures, the gain over the starting policy with its CI, the run's cost."""
    summary = gain_summary(final, baseline, recipe.eval.bootstrap_samples, recipe.seed)
    if last:
        summary.update({k: v for k, v in last.items() if k.startswith(("objective/", "response/", "rollout/", "speed/"))})
    summary.update({"iterations": state.iteration, "episodes": state.episodes, "wall_s": state.wall_s, "final_beta": beta})
    return summary
