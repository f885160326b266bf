"""The online RL loop shared by GRPO, PPO and online DPO.

``train`` reads as the phases of every step, whatever the algorithm:

1. sample: ``group_size`` completions for ``prompts_per_step`` prompts in one engine (vLLM) call;
2. score: verifiers for prompts with a reference answer, the reward model for the others
   (``sampling.collect_batch`` runs 1 and 2, and DAPO's refill; with ``--rollout-staleness k`` the
   ``RolloutBuffer`` runs them k steps ahead of the update);
3. update: ``run.update(rollouts)``, the only algorithm-specific call (``policy_gradient.PolicyGradient``
   for GRPO and PPO, ``dpo.DPOUpdate``);
4. sync: push the new weights into the engine;
5. log and checkpoint: the step's metrics, the curriculum's decision, held-out evaluation, outputs and
   checkpoints.

``run.start_run`` loads everything before the loop into one typed ``Run``; ``final_report`` writes the results.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from reasoning_rl import curriculum
from reasoning_rl.checkpoint import latest_checkpoint, save_checkpoint
from reasoning_rl.config import RLConfig
from reasoning_rl.plots import plot_run
from reasoning_rl.rollout_buffer import RolloutBuffer
from reasoning_rl.run import Run, Update, start_run
from reasoning_rl.sampling import Batch, collect_batch
from reasoning_rl.sharded_checkpoint import save_sharded_checkpoint
from reasoning_rl.step_metrics import reduce_over_ranks, step_metrics
from reasoning_rl.tracking import (format_seconds, peak_memory_gib, read_metrics, weights_sha256, write_completions,
                                   write_samples)
from runtime.errors import UserError


def train(cfg: RLConfig, update: Update, algorithm: str) -> dict:
    """Run the loop with ``update`` (a ``PolicyGradient`` or a ``DPOUpdate``); return the report."""
    run = start_run(cfg, update, algorithm)
    done = run.state.step  # steps finished (a resumed run starts past its checkpoint)
    bar = tqdm(initial=done, total=cfg.steps, desc=algorithm, unit="step", disable=not run.dist.is_main)
    with report_interrupt(run.out, bar), StopRequest() as stop:
        for step in range(done + 1, cfg.steps + 1):
            # 1-2. sample G completions per prompt in the engine, and score them (k steps ahead: --rollout-staleness)
            batch = run.buffer.next(lambda: collect_batch(run))
            # 3. the algorithm's update
            train_metrics = update_policy(run, batch, step)
            # 4. the new weights into the engine
            sync(run, batch)
            # 5. the step's metrics, the curriculum's decision on them, then log, evaluate and checkpoint
            metrics = reduce_over_ranks(run.dist, step_metrics(run, batch, train_metrics))
            curriculum.advance(run, step, metrics)
            last = run.is_last(step)
            log_and_checkpoint(run, step, batch, metrics, last)
            done = step
            show_progress(bar, batch, metrics)
            if last:
                break
            if stop.agreed(run.dist):  # Ctrl-C: this step is done; keep it, then exit 130
                stop_after(run, step)
            bar.update()
        bar.n = done  # the last step is drawn once, by close() (a log file would get it twice)
        bar.close()
    run.logger.close()
    if done < cfg.steps and run.dist.is_main:
        print(f"--time-limit {cfg.time_limit:g} min reached after step {done}; add --resume to go on to step {cfg.steps}")
    return final_report(run, done)


def update_policy(run: Run, batch: Batch, step: int) -> dict[str, float]:
    """Phase 3: the algorithm's update and the learning-rate schedule."""
    start, metrics = time.perf_counter(), {"train/lr": run.scheduler.get_last_lr()[0]}
    if batch.groups:  # dynamic sampling can come back empty (on every rank)
        metrics.update(run.update(batch.rollouts, step))
        run.scheduler.step()
    if metrics.get("train/nonfinite_steps") and run.dist.is_main:
        tqdm.write(f"warning: step {step}: the loss or the gradient norm was not finite; the update was skipped "
                   "(counted in train/nonfinite_steps)", file=sys.stderr)
    batch.seconds["train"] = time.perf_counter() - start
    return metrics


def sync(run: Run, batch: Batch) -> None:
    """Phase 4: push the new weights into the engine."""
    batch.seconds["sync"] = run.generator.sync_weights(run.policy)


def log_and_checkpoint(run: Run, step: int, batch: Batch, metrics: dict[str, float], last: bool) -> None:
    """Phase 5: held-out evaluation every ``eval_every`` steps (and the final one on the ``last`` step), the metrics
    (and the reward-hacking monitor's warning), the completions and samples, and a checkpoint every ``save_every``
    steps and on the ``last``.

    Every rank evaluates its share of the held-out problems; rank 0 writes the files and the checkpoint while the
    others wait for it.
    """
    cfg, state = run.cfg, run.state
    state.step = step
    state.sampled_total = metrics["completions/sampled_total"] = state.sampled_total + metrics["completions/sampled"]
    metrics.update(evaluate_held_out(run, step, batch.level, last))
    state.cursors, state.record = [s.cursor for s in run.streams], run.record.to_json()
    run.logger.log(step, metrics)
    if (warning := run.monitor.observe(step, metrics)) and run.dist.is_main:
        tqdm.write(warning, file=sys.stderr)
    write_outputs(run, step, batch, last)
    if step % cfg.save_every == 0 or last:
        checkpoint(run, step)


def checkpoint(run: Run, step: int) -> None:
    """The checkpoint of ``step``, with the update's own state (PPO's critic) and every rank's pending rollouts:
    written by rank 0 while the others wait, or with sharded models by every rank (``write_checkpoint``). A write
    that fails stops the run on every rank with one line."""
    pending = run.dist.gather(list(run.buffer.batches))

    def extra(folder: Path) -> None:
        run.update.save(folder)
        if run.dist.is_main:
            RolloutBuffer.save(folder, pending)

    failed = None
    try:
        write_checkpoint(run, step, extra)
    except OSError as error:  # a full disk (ENOSPC), an I/O error: the previous checkpoint is untouched
        latest = latest_checkpoint(run.out)
        failed = (f"could not write the checkpoint of step {step} into {run.out / 'checkpoints'}: "
                  f"{error.strerror or error}; " + (f"{latest} is intact, and --resume continues from it" if latest
                                                    else "no earlier checkpoint was written"))
    failed = next((f for f in run.dist.gather(failed) if f), None)  # every rank stops alike
    if failed:
        raise UserError(failed)


def write_checkpoint(run: Run, step: int, extra) -> None:
    """DDP: rank 0 writes the whole model (``checkpoint.save_checkpoint``). Sharded (``--shard fsdp``, on any number
    of processes): every rank writes its shards (``sharded_checkpoint``)."""
    cfg, args = run.cfg, (run.out, step, run.policy, run.tokenizer, run.optimizer, run.scheduler, run.state.to_json())
    if cfg.shard != "ddp":
        save_sharded_checkpoint(*args, run.dist, keep=cfg.keep_checkpoints, extra=extra, optimizer_state=cfg.optimizer_state)
    elif run.dist.is_main:
        save_checkpoint(*args, keep=cfg.keep_checkpoints, extra=extra, optimizer_state=cfg.optimizer_state)


def stop_after(run: Run, step: int) -> None:
    """Ctrl-C: a checkpoint of the finished ``step`` (unless it has one), then exit 130 (``report_interrupt``)."""
    if step % run.cfg.save_every:
        checkpoint(run, step)
    raise KeyboardInterrupt


class StopRequest:
    """Ctrl-C during the loop: the first lets the current step finish (then ``stop_after`` checkpoints it and the run
    exits 130, so ``--resume`` loses no finished step); a second stops at once. Installed only where Ctrl-C is live:
    in the main thread, and when SIGINT is not ignored."""

    def __init__(self):
        self.requested, self.installed, self.previous = False, False, None

    def __enter__(self) -> "StopRequest":
        self.previous = signal.getsignal(signal.SIGINT)
        self.installed = threading.current_thread() is threading.main_thread() and self.previous is signal.default_int_handler
        if self.installed:
            signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: finishing this step, then saving a checkpoint (Ctrl-C again stops at once)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)

    def agreed(self, dist) -> bool:
        """Some rank was asked to stop (every rank asks the others, so that all stop after the same step)."""
        return any(dist.gather(self.requested)) if dist.world > 1 else self.requested


def evaluate_held_out(run: Run, step: int, level: int, last: bool) -> dict[str, float]:
    """Greedy held-out accuracy every ``eval_every`` steps (every level's with a curriculum, to see what is learnt and
    what is forgotten), and on the ``last`` step the final evaluation (greedy and sampled pass@1) into the state."""
    cfg, task = run.cfg, run.tasks[level]
    if last:
        run.state.after = run.evaluate(cfg.eval_samples)
        return {f"heldout/{k}": v for k, v in run.state.after.get(task, {}).items()}
    if not (cfg.eval_every and step % cfg.eval_every == 0 and run.heldout[task]):
        return {}
    if cfg.curriculum:
        return {f"heldout/greedy/{t.removeprefix('arith:')}": r["greedy"] for t, r in run.evaluate(0).items()}
    return {"heldout/greedy": run.evaluate(0, [task])[task]["greedy"]}


def write_outputs(run: Run, step: int, batch: Batch, last: bool) -> None:
    """Every rank's completions with their verdicts (``completions.jsonl``), one group every ``sample_every`` steps and on
    the last (``samples.jsonl``), and one example on the console at each evaluation; rank 0 writes."""
    cfg = run.cfg
    every_rank = run.dist.gather(batch.generated) if cfg.log_completions else []
    if not run.dist.is_main:
        return
    for generated in every_rank:
        write_completions(run.out, step, generated)
    G, rollouts = cfg.group_size, batch.rollouts
    if cfg.sample_every and (step % cfg.sample_every == 0 or last):
        write_samples(run.out, step, [rollouts.prompts[0]] * G if len(rollouts) else [], rollouts.texts[:G],
                      rollouts.rewards[:G].tolist(), rollouts.answers[:G])
    if len(rollouts) and (last or (cfg.eval_every and step % cfg.eval_every == 0)):
        best = int(rollouts.rewards[:G].argmax())  # the group's best completion, to see what is being rewarded
        tqdm.write(f"step {step} example: {rollouts.problems[0].problem!r} -> {rollouts.texts[best].strip()!r} "
                   f"(reward {rollouts.rewards[best]:.2f}, reference {rollouts.answers[best]!r})")


def show_progress(bar, batch: Batch, metrics: dict[str, float]) -> None:
    """The step bar's postfix: mean reward, mean completion length, generation and training seconds."""
    seconds = batch.seconds
    bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", len=f"{metrics['completions/mean_length']:.0f}",
                    gen=f"{seconds['generate']:.0f}s", train=f"{seconds['train']:.0f}s", refresh=False)


def final_report(run: Run, steps: int) -> dict:
    """results.json, the plot, and held-out accuracy before -> after on the console (rank 0; the others return it)."""
    cfg, state, dist = run.cfg, run.state, run.dist
    wall = time.perf_counter() - run.start_time
    before, after = state.before, state.after or run.evaluate(cfg.eval_samples)
    memory = dist.gather(peak_memory_gib())
    report = {"algorithm": run.algorithm, "tasks": run.tasks, "before": before, "after": after, "wall_seconds": wall,
              "steps": steps, "processes": dist.world, "peak_memory_gib": max(memory), "peak_memory_gib_per_rank": memory}
    if dist.world > 1 and not dist.sharded:  # DDP keeps the ranks' weights equal; a fingerprint per rank shows it did
        report["weights_sha256_per_rank"] = dist.gather(weights_sha256(run.policy))
        if len(set(report["weights_sha256_per_rank"])) > 1 and dist.is_main:
            print("warning: the ranks' weights differ at the end of the run", file=sys.stderr)
    if not dist.is_main:
        return report
    (run.out / "results.json").write_text(json.dumps(report, indent=2))
    name, tasks = run.algorithm.upper(), run.tasks
    title = f"{name} on {tasks[0]}" if len(tasks) == 1 else f"{name} curriculum over {len(tasks)} levels"
    plot_run(read_metrics(run.out), run.out / "training.png", f"{title} ({cfg.model})", report)
    print_summary(run, report)
    return report


def print_summary(run: Run, report: dict) -> None:
    """Held-out accuracy per task, untrained -> trained, the wall time and where the outputs are."""
    before, after, memory = report["before"], report["after"], report["peak_memory_gib_per_rank"]
    sampled = f", and sampled pass@1 at temperature 1.0 over {run.cfg.eval_samples} samples each" if run.cfg.eval_samples else ""
    print(f"\nheld-out accuracy (up to {run.cfg.eval_problems} problems per task; greedy{sampled})"
          + (", untrained -> trained:" if before else " (untrained: not evaluated in this run):"))
    for t in after:
        b, a = before.get(t), after[t]
        line = f"  {t:>16}: greedy " + (f"{b['greedy']:6.1%} -> " if b else "") + f"{a['greedy']:6.1%}"
        if "pass@1" in a:
            line += "   sampled pass@1 (T=1) " + (f"{b['pass@1']:6.1%} -> " if b and "pass@1" in b else "") + f"{a['pass@1']:6.1%}"
        print(line)
    ranks = (f" on {run.dist.world} processes (peak memory per rank {', '.join(f'{m:.1f}' for m in memory)} GiB)"
             if run.dist.world > 1 else "")
    print(f"wall time {format_seconds(report['wall_seconds'])}{ranks}; metrics in {run.out / 'metrics.jsonl'}, "
          f"plot in {run.out / 'training.png'}")


@contextmanager
def report_interrupt(out: Path, bar):
    """On Ctrl-C, one line saying which checkpoint ``--resume`` continues from; the exit status is 130 (``cli.run``).
    A ``UserError`` in the loop (a checkpoint that cannot be written) closes the bar first, so it prints on its line."""
    try:
        yield
    except UserError:
        bar.close()
        raise
    except KeyboardInterrupt:
        bar.close()  # drawn once, before the message (not again at exit)
        latest = latest_checkpoint(out)
        where = (f"--resume continues from {latest} (step {int(latest.name.removeprefix('step_'))})" if latest
                 else "no checkpoint was written yet, so --resume would have nothing to continue from")
        print(f"\ninterrupted: {where}", file=sys.stderr, flush=True)
        raise
