"""What ``tests/test_distributed.py`` runs on every rank of a launch (``torchrun``) or in one plain process.

    torchrun --nproc-per-node 2 tests/distributed_worker.py step MODEL OUT    # 2 ranks x 4 groups
    python tests/distributed_worker.py step MODEL OUT                         # 1 rank x 8 groups
    torchrun --nproc-per-node 2 tests/distributed_worker.py engine MODEL OUT  # one engine, tensor-parallel over 2
    torchrun --nproc-per-node 2 tests/distributed_worker.py step_fsdp MODEL OUT       # 2 FSDP2 ranks x 4 groups
    torchrun --nproc-per-node 2 tests/distributed_worker.py step_hsdp MODEL OUT       # hybrid: 2 replicas of 1 shard
    torchrun --nproc-per-node 2 tests/distributed_worker.py engine_fsdp MODEL OUT     # an engine per rank, sharded sync
    torchrun --nproc-per-node 2 tests/distributed_worker.py train ARGS...     # scripts/train_grpo.py ARGS
    torchrun --nproc-per-node 2 tests/distributed_worker.py train_dpo ARGS... # scripts/train_dpo.py ARGS (online)
    torchrun --nproc-per-node 2 tests/distributed_worker.py train_ppo ARGS... # scripts/train_ppo.py ARGS

``step``: for each case (GRPO with each loss aggregation, with and without the update's savings; PPO with
its critic) every rank takes its share of the same 8 groups, steps once with SGD from the same start, and
saves its parameters to ``OUT/<case>_rank<r>.pt``.

``engine``: the vLLM engine over all ranks with tensor parallelism (one process: one engine of its own);
greedy completions of this rank's half of 8 prompts before and after a weight sync of perturbed weights,
saved to ``OUT/engine_rank<r>.json``. ``engine_fsdp``: one engine per rank, synced from the FSDP2-sharded policy.

``train``, ``train_dpo``: the GRPO (DPO) script with one more reward, added the way a user adds one: a random model is never
right, so accuracy alone gives no group a gradient; the number of distinct characters does.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_efficient_update import G, batch  # noqa: E402
from test_rollout_correction import with_engine_logprobs  # noqa: E402
from test_tool_rollouts import mark_tool_tokens  # noqa: E402

from reasoning_rl.advantage_estimators import GAECritic, GroupRelative  # noqa: E402
from reasoning_rl.models import load_policy, load_tokenizer, prepare_policy  # noqa: E402
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig  # noqa: E402
from runtime.distributed import Dist  # noqa: E402
from runtime.sharding import full_items, local_bytes  # noqa: E402

REWARDS = [[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0.5, 1], [0, 1, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1], [0.5, 0, 0, 1]]
CASES = {
    "sequence_mean": dict(loss_aggregation="sequence_mean"),
    "token_mean": dict(loss_aggregation="token_mean"),
    "sequence_sum": dict(loss_aggregation="sequence_sum"),
    "plain": dict(loss_aggregation="sequence_mean", skip_zero_advantage=False, shared_prompt=False),
    "ppo": dict(loss_aggregation="token_mean"),
    # with engine log-probs (the trainer's plus noise): the rollout correction, and the GSPO and CISPO losses
    "token_tis": dict(loss_aggregation="sequence_mean", rollout_correction="token_tis", rollout_correction_threshold=1.2),
    "sequence_mask": dict(loss_aggregation="token_mean", rollout_correction="sequence_mask", rollout_correction_threshold=1.1,
                          mu=2),
    "gspo": dict(loss_type="gspo", clip_low=0.1, clip_high=0.15, mu=2),
    "cispo": dict(loss_type="cispo", clip_high=0.2, mu=2, loss_aggregation="token_mean"),
    # completions with tool output inside (masked out of the loss and the token counts), PPO's critic included
    "tool_output": dict(loss_aggregation="sequence_mean", rollout_correction="token_tis", rollout_correction_threshold=1.2),
    "tool_output_ppo": dict(loss_aggregation="token_mean"),
    # LoRA adapters (peft) on the base model, sharded with it under --shard fsdp
    "lora": dict(loss_aggregation="sequence_mean", lora_rank=4, lora_alpha=8),
}


def main(model: str, out: Path, shard: str = "ddp") -> None:
    dist = Dist.start(shard, shard_group=1 if shard == "hsdp" else 0)  # hsdp: shards of 1 rank, replicated over 2
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(model)
    rollouts = with_engine_logprobs(batch(REWARDS, seed=3), model)  # the same engine log-probs on every rank
    share = torch.arange(len(REWARDS)).chunk(dist.world)[dist.rank]  # this rank's 8 / world groups
    mine = rollouts.select_groups(torch.isin(torch.arange(len(REWARDS)), share))
    assert len(mine) == len(rollouts) // dist.world and mine.group_size == G
    for case, options in CASES.items():
        torch.manual_seed(0)
        cfg = PolicyGradientConfig(autocast=False, micro_batch_size=3, lr=0.1, **options)
        policy = prepare_policy(load_policy(model), cfg.lora_rank, cfg.lora_alpha, gradient_checkpointing=False)
        policy = dist.shard_model(policy)  # sharded (--shard fsdp) before its optimizer is built
        estimator = GAECritic(kl_coef=0.05, critic_lr=0.1) if case.endswith("ppo") else GroupRelative()
        update = PolicyGradient(cfg, estimator)
        reference = dist.shard_model(load_policy(model).eval()) if update.needs_reference else None
        trained = [p for p in policy.parameters() if p.requires_grad]
        update.setup(policy, reference, tokenizer, torch.optim.SGD(trained, lr=cfg.lr), model, dist)
        if case.endswith("ppo"):  # the critic steps with SGD too
            estimator.optimizer = torch.optim.SGD(estimator.critic.parameters(), lr=0.1)
        every = torch.ones(len(mine.problems), dtype=torch.bool)
        update(mark_tool_tokens(mine.select_groups(every)) if case.startswith("tool_output") else mine, step=1)
        weights = {f"policy.{k}": v.cpu() for k, v in full_items(policy.state_dict())}  # gathered when sharded
        if case.endswith("ppo"):
            weights.update({f"critic.{k}": v.cpu() for k, v in full_items(estimator.critic.state_dict())})
        torch.save(weights, out / f"{case}_rank{dist.rank}.pt")
    memory(model, out, dist)


def memory(model: str, out: Path, dist: Dist) -> None:
    """The bytes of the policy's parameters and of AdamW's state that this rank holds, after two steps of the
    trainer's AdamW (fused) on the same seeded gradients, and the weights those steps give (``adamw_rank<r>.pt``)."""
    import json

    from torch.distributed.tensor import DTensor, distribute_tensor

    from reasoning_rl.optim import make_optimizer

    policy = dist.shard_model(load_policy(model))
    optimizer, _ = make_optimizer(policy, 1e-2, 0.1, 0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        for p in policy.parameters():
            grad = torch.randn(p.shape, generator=generator)  # the whole gradient, the same on every rank
            p.grad = distribute_tensor(grad, p.device_mesh, p.placements) if isinstance(p, DTensor) else grad
        optimizer.step()
    torch.save({k: v.cpu() for k, v in full_items(policy.state_dict())}, out / f"adamw_rank{dist.rank}.pt")
    moments = [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t) and t.ndim]
    (out / f"memory_rank{dist.rank}.json").write_text(json.dumps({
        "parameters": local_bytes(policy.parameters()), "adamw": local_bytes(moments),
        "parameters_full": sum(p.numel() * p.element_size() for p in policy.parameters())}))


def engine(model: str, out: Path, shard: str = "ddp") -> None:
    """Greedy tokens before and after a sync of perturbed weights: with ``ddp`` one engine tensor-parallel over the
    ranks; with ``fsdp`` one engine per rank, synced from the sharded policy (streamed, one gathered tensor at a time)."""
    import json

    from reasoning_rl.generation import VLLMGenerator

    dist = Dist.start(shard)
    tp = 1 if dist.sharded else dist.world
    generator = VLLMGenerator(model, dtype="float32", memory_fraction=0.05, max_model_len=512, tensor_parallel_size=tp,
                              dist=dist)  # float32: a sharded sum rounds like an unsharded one, near-ties stay put
    prompts = [[1, 42 + k, 7 * k + 3, 100 + k] for k in range(8)]
    mine = prompts[dist.rank * 8 // dist.world : (dist.rank + 1) * 8 // dist.world]
    before = [s.token_ids for (s,) in generator.generate(mine, 1, 0.0, 1.0, 12)]
    policy = load_policy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    generator.sync_weights(dist.shard_model(policy))
    after = [s.token_ids for (s,) in generator.generate(mine, 1, 0.0, 1.0, 12)]
    (out / f"engine_rank{dist.rank}.json").write_text(json.dumps({"before": before, "after": after}))


def distinct_chars(completion: str, answer: str) -> float:
    return len(set(completion)) / 20


if __name__ == "__main__":
    if sys.argv[1] in ("step", "step_fsdp", "step_hsdp"):
        main(sys.argv[2], Path(sys.argv[3]), sys.argv[1].removeprefix("step_") if "_" in sys.argv[1] else "ddp")
    elif sys.argv[1] in ("engine", "engine_fsdp"):
        engine(sys.argv[2], Path(sys.argv[3]), "fsdp" if sys.argv[1] == "engine_fsdp" else "ddp")
    else:
        sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
        import importlib

        from reasoning_rl.cli import run
        from rewards import register

        script = importlib.import_module({"train": "train_grpo", "train_dpo": "train_dpo", "train_ppo": "train_ppo"}[sys.argv[1]])
        register("distinct_chars")(distinct_chars)
        run(script.main, script.Config, argv=sys.argv[2:])
