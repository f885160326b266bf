"""The prompt record and difficulty-aware selection (reasoning_rl/selection.py)."""

import json
import random
from collections import Counter

import pytest
import torch

from data_prep import Problem
from reasoning_rl.config import parse_config
from reasoning_rl.selection import PromptRecord, select_prompts
from reasoning_rl.tasks import PromptStream

G = 4


def pool_and_record(n: int = 60):
    """``n`` prompts each informative (1 of 4 right), always solved and never solved, all seen once."""
    problems = [Problem(f"p{i}", f"q{i}", "1", "test") for i in range(3 * n)]
    record = PromptRecord()
    for i, problem in enumerate(problems):
        hits = [1, 4, 0][i // n]
        record.update([problem.id], torch.tensor([1.0] * hits + [0.0] * (G - hits)), G)
    return problems, record


def test_record_counts_attempts_and_pass_rate_and_summarises():
    record = PromptRecord()
    record.update(["a", "b", "c"], torch.tensor([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0.0]), G)
    assert record.informative("b") and not record.informative("a") and not record.informative("c")
    record.update(["b"], torch.tensor([1, 1, 1, 1.0]), G)
    assert record.counts == {"a": [4, 4.0, 1.0], "b": [8, 5.0, 1.0], "c": [4, 0.0, 0.0]}
    assert not record.informative("b")  # half right once, all right now: judged on its latest group
    assert record.summary() == {"prompts/seen": 3, "prompts/informative": 0, "prompts/solved": 2, "prompts/never_solved": 1}
    assert PromptRecord.from_json(json.loads(json.dumps(record.to_json()))).counts == record.counts


@pytest.mark.parametrize("retry_weight", [0.1, 0.25])
def test_saturated_prompts_are_drawn_about_retry_weight_times_as_often_as_informative_ones(retry_weight):
    problems, record = pool_and_record()
    pool = {p.id: p for p in problems}
    sampler = PromptStream(problems, seed=0)
    draws = Counter()
    rng = random.Random(0)
    for _ in range(2000):
        for p in select_prompts(sampler, record, pool, 8, explore=0.0, retry_weight=retry_weight, rng=rng):
            draws[["informative", "solved", "never"][int(p.id[1:]) // 60]] += 1
    assert sampler.cursor == 0  # explore = 0: every prompt came from the record
    for kind in ("solved", "never"):  # per prompt: each kind has 60 prompts
        ratio = draws[kind] / draws["informative"]
        assert retry_weight * 0.8 < ratio < retry_weight * 1.25, (kind, ratio)


def test_unseen_prompts_are_explored_at_the_set_rate_and_compete_with_the_seen():
    problems, record = pool_and_record(20)
    fresh = [Problem(f"new{i}", "q", "1", "test") for i in range(400)]
    pool = {p.id: p for p in problems + fresh}
    sampler = PromptStream(fresh, seed=0)  # the plain sampler's walk (here: over the unseen prompts)
    rng, seen_before, unseen_drawn = random.Random(0), set(record.counts), 0
    for step in range(20):
        chosen = select_prompts(sampler, record, pool, 8, explore=0.25, retry_weight=0.1, rng=rng)
        assert len({p.id for p in chosen}) == 8
        new = sum(p.id not in seen_before for p in chosen)
        assert new >= 2  # a quarter of the batch always comes from the sampler
        unseen_drawn += new
    assert sampler.cursor == unseen_drawn  # every unseen prompt came from the sampler's walk, in its order
    # the other 6 per batch: 20 informative prompts at weight 1 against 6 unseen slots at 1 and 40 saturated at 0.1
    # (total 4): about 1.2 unseen per batch, 24 in 20 batches; all-unseen would be 120, none 0
    assert 2 * 20 + 8 < unseen_drawn < 2 * 20 + 48


def test_too_few_seen_prompts_are_topped_up_by_the_sampler():
    problems = [Problem(f"p{i}", "q", "1", "test") for i in range(30)]
    pool, included = {p.id: p for p in problems}, 0
    for seed in range(200):
        record = PromptRecord()
        record.update(["p0"], torch.tensor([1, 0, 0, 0.0]), G)
        chosen = select_prompts(PromptStream(problems, seed), record, pool, 8, 0.25, 0.1, random.Random(seed))
        assert len({p.id for p in chosen}) == 8
        included += "p0" in {p.id for p in chosen}
    assert 0.75 < included / 200 < 0.95  # 6 places for p0 and 6 unseen, all at weight 1: 6 / 7 of the time


def test_the_record_survives_a_stop_and_resume(tiny_model, tmp_path):
    """Stopping after step 2 and resuming gives the record (and the prompts drawn from it) of 4 steps straight."""
    import train_grpo
    from test_train_smoke import TINY_RUN

    def run(out, *extra):
        args = ["--model", str(tiny_model), "--output-dir", str(out), *TINY_RUN, "--save-every", "1", "--select-by-difficulty",
                "--explore-fraction", "0.5", "--eval-samples", "0", *extra]
        train_grpo.main(parse_config(train_grpo.Config, args))
        return json.loads((sorted((out / "checkpoints").glob("step_*"))[-1] / "trainer_state.json").read_text())["record"]

    straight = run(tmp_path / "straight", "--steps", "4")
    run(tmp_path / "resumed", "--steps", "2")
    resumed = run(tmp_path / "resumed", "--steps", "4", "--resume")
    assert resumed == straight and sum(n for n, _, _ in straight.values()) == 4 * 2 * 4  # 4 steps x 2 prompts x G = 4
    metrics = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and metrics[-1]["prompts/seen"] == len(straight)
