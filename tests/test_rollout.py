from types import SimpleNamespace

import pytest
import torch

from data_prep import Problem
from reasoning_rl.generation import Completion
from reasoning_rl.logprobs import pack, position_ids, selective_log_softmax
from reasoning_rl.models import load_tokenizer, resolve_model
from reasoning_rl.rollout import Rollouts, micro_batches, score_rollouts
from reasoning_rl.sampling import generate_groups
from reasoning_rl.tasks import PromptStream
from runtime.distributed import Dist


def make_rollouts(answers, texts, group_size=2):
    problems = [Problem(f"p{i}", f"q{i}", a, "test") for i, a in enumerate(answers)]
    n = len(texts)
    return Rollouts(problems, [f"prompt {i}" for i in range(len(answers))], [[1, 2]] * n, [[5] * (i + 1) for i in range(n)],
                    texts, torch.zeros(n, dtype=torch.bool), group_size)


def test_score_rollouts_weights_components_and_overlong():
    r = make_rollouts(["4", "7"], ["\\boxed{4}", "4", "\\boxed{7}", "8"])
    score_rollouts(r, {"accuracy": 1.0, "boxed_format": 0.5}, max_new_tokens=4, overlong_cache=2)
    assert r.components["accuracy"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert r.components["boxed_format"].tolist() == [1.0, 0.0, 1.0, 0.0]
    # completion lengths 1, 2, 3, 4 with max 4 and cache 2: penalties 0, 0, -0.5, -1
    assert r.components["overlong"].tolist() == [0.0, 0.0, -0.5, -1.0]
    assert r.rewards.tolist() == [1.5, 1.0, 1.0, -1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        score_rollouts(r, {"acuracy": 1.0}, 4)


def test_open_ended_prompts_are_scored_by_the_scorer_and_logged_apart():
    r = make_rollouts(["4", None], ["\\boxed{4}", "5", "a poem", "a longer poem"])
    score_rollouts(r, {"accuracy": 1.0}, 16, open_ended_scorer=lambda prompts, texts: [float(len(t)) for t in texts])
    assert r.components["accuracy"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert r.components["reward_model"].tolist() == [0.0, 0.0, 6.0, 13.0]
    assert r.rewards.tolist() == [1.0, 0.0, 6.0, 13.0]
    with pytest.raises(ValueError, match="reward model"):
        score_rollouts(make_rollouts(["4", None], ["a", "b", "c", "d"]), {"accuracy": 1.0}, 16)


def test_select_and_concat_keep_groups_together():
    r = make_rollouts(["1", "2", "3"], ["a", "b", "c", "d", "e", "f"])
    score_rollouts(r, {"accuracy": 1.0}, 16)
    kept = r.select_groups(torch.tensor([True, False, True]))
    assert kept.texts == ["a", "b", "e", "f"] and [p.id for p in kept.problems] == ["p0", "p2"]
    both = Rollouts.concat([kept, r.select_groups(torch.tensor([False, True, False]))])
    assert both.texts == ["a", "b", "e", "f", "c", "d"] and len(both.rewards) == 6


def test_micro_batches_cover_every_row_once():
    r = make_rollouts(["1", "2", "3"], ["a", "b", "c", "d", "e", "f"])
    batches = micro_batches(r, 4)
    assert sorted(i for b in batches for i in b) == list(range(6)) and [len(b) for b in batches] == [4, 2]


def test_pack_pads_prompts_left_and_completions_right():
    ids, attention, mask = pack([[1, 2, 3], [4]], [[5], [6, 7]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 5, 0], [0, 0, 4, 6, 7]]
    assert mask.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert position_ids(attention).tolist() == [[0, 1, 2, 3, 3], [0, 0, 0, 1, 2]]


def test_selective_log_softmax_matches_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 11)
    targets = torch.randint(0, 11, (5, 3))
    logps, entropy = selective_log_softmax(logits, targets, with_entropy=True, chunk=2)
    full = torch.log_softmax(logits, -1)
    assert torch.allclose(logps, full.gather(-1, targets[..., None]).squeeze(-1), atol=1e-6)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1), atol=1e-5)


class RecordingEngine:
    """A ``Generator`` that records each prompt with its seed and returns one empty completion per sample."""

    def __init__(self):
        self.seen = []

    def generate(self, prompt_ids, n, temperature, top_p, max_new_tokens, stop=None, seeds=None):
        self.seen += list(zip(map(tuple, prompt_ids), seeds))
        return [[Completion([0], "", False) for _ in range(n)] for _ in prompt_ids]


def test_a_prompt_gets_the_same_seed_on_one_rank_and_on_either_of_two():
    """The seeds follow the prompts through ``dist.share``: the pairs two ranks sample are the one process's pairs,
    and the next step (or DAPO's next engine call) draws new seeds."""
    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    problems = [Problem(f"p{i}", f"What is {i} + 1?", str(i + 1), "test") for i in range(16)]
    cfg = SimpleNamespace(seed=3, prompts_per_step=4, curriculum_replay=0.0, select_by_difficulty=False, template="r1_zero",
                          group_size=2, temperature=1.0, top_p=1.0, max_new_tokens=8)

    def seen(rank, world, step=0, call=0):
        run = SimpleNamespace(cfg=cfg, state=SimpleNamespace(level=0, step=step), streams=[PromptStream(problems, 3)],
                              generator=RecordingEngine(), tokenizer=tokenizer, dist=Dist(rank=rank, world=world))
        generate_groups(run, {"generate": 0.0}, call)
        return run.generator.seen

    one = seen(0, 1)
    assert seen(0, 2) + seen(1, 2) == one and len({seed for _, seed in one}) == 4
    assert [p for p, _ in seen(0, 1, step=1)] == [p for p, _ in one]  # same stream position, for the comparison
    assert not {s for _, s in seen(0, 1, step=1)} & {s for _, s in one}
    assert not {s for _, s in seen(0, 1, call=1)} & {s for _, s in one}
