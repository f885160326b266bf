"""The Bradley-Terry reward model: preference data, training on a tiny model, and its use as a reward."""

import json

import pytest

from runtime.errors import UserError

from data_prep.preferences import heldout_split, load_preference_pairs, open_ended_problems, split_dialogues
from reasoning_rl.config import parse_config


def test_hh_dialogues_split_at_the_last_assistant_turn():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I pick a lock?\n\nAssistant: I can't help with that."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I pick a lock?\n\nAssistant: Use a tension wrench."
    prompt, c, r = split_dialogues(chosen, rejected)
    assert prompt.endswith("how do I pick a lock?\n\nAssistant:")
    assert (c, r) == (" I can't help with that.", " Use a tension wrench.")
    with pytest.raises(ValueError, match="differ before"):
        split_dialogues(chosen, "\n\nHuman: something else\n\nAssistant: x")


def test_malformed_pairs_are_reported_with_their_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
                    + json.dumps({"prompt": "p", "chosen": "a"}) + "\n" + "not json\n")
    with pytest.warns(UserWarning, match=r"skipped 2 malformed row\(s\) in .*prefs.jsonl:2"):
        assert len(load_preference_pairs(str(path))) == 1
    from data_prep import MalformedRowError

    with pytest.raises(MalformedRowError, match="prefs.jsonl:2"):
        load_preference_pairs(str(path), strict=True)


def test_hh_rlhf_split_is_stable_and_disjoint(shared_data):
    pairs = load_preference_pairs(str(shared_data / "hh_rlhf_harmless"))
    train, heldout = heldout_split(pairs, 0.2)
    assert len(train) + len(heldout) == len(pairs) and not {p.id for p in train} & {p.id for p in heldout}
    assert 0.15 < len(heldout) / len(pairs) < 0.25
    assert heldout_split(list(reversed(pairs)), 0.2)[1] == list(reversed(heldout))  # by id, not by position
    problems = open_ended_problems(heldout[:5])
    assert all(p.answer is None and p.problem and "Assistant:" not in p.problem for p in problems)


@pytest.fixture(scope="module")
def tiny_reward_model(tiny_model, tmp_path_factory):
    """A reward model trained for a few steps on a toy preference file where 'good' beats 'bad'."""
    import train_reward_model

    folder = tmp_path_factory.mktemp("rm")
    rows = [{"prompt": f"Q{i}:", "chosen": f" good answer {i}", "rejected": f" bad answer {i}"} for i in range(40)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = parse_config(train_reward_model.Config, [
        "--model", str(tiny_model), "--data", str(folder / "pairs.jsonl"), "--output-dir", str(folder / "run"),
        "--heldout-fraction", "0.25", "--epochs", "4", "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "0",
        "--eval-every", "0", "--max-length", "32", "--trainable-layers", "1", "--no-tensorboard"])
    report = train_reward_model.main(cfg)
    return folder / "run", report


def test_reward_model_training_learns_the_toy_preference(tiny_reward_model):
    run, report = tiny_reward_model
    assert report["heldout_pairs"] > 0 and report["train_pairs"] + report["heldout_pairs"] == 40
    assert report["after"]["accuracy"] > 0.9 > report["before"]["accuracy"]  # chance-level head before training
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train/loss"] < lines[1]["train/loss"]
    assert (run / "model" / "config.json").exists() and (run / "training.png").stat().st_size > 0


def test_trained_reward_model_scores_open_ended_completions(tiny_reward_model):
    from reasoning_rl.reward_model import RewardModelScorer

    scorer = RewardModelScorer(str(tiny_reward_model[0] / "model"), autocast=False)
    good, bad = scorer(["Q99:", "Q99:"], ["good answer 99", "bad answer 99"])
    assert good > bad


def test_mixed_batch_trains_and_logs_both_reward_sources(tiny_model, tiny_reward_model, shared_data, tmp_path):
    import train_grpo
    from test_train_smoke import TINY_RUN

    cfg = parse_config(train_grpo.Config, [
        "--model", str(tiny_model), "--steps", "2", "--output-dir", str(tmp_path), *TINY_RUN, "--prompts-per-step", "4",
        "--task", "arith:add_1d+hh_rlhf", "--train-problems", "400", "--reward-model", str(tiny_reward_model[0] / "model")])
    train_grpo.main(cfg)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    mixed = [m for m in lines if 0 < m.get("reward/open_ended_fraction", 0) < 1]
    assert mixed, "no step drew both kinds of prompt"
    m = mixed[0]
    assert "reward/accuracy" in m and "reward/reward_model" in m  # each over its own prompts
    assert m["train/grad_norm"] > 0


def test_open_ended_prompts_without_a_reward_model_are_refused(tiny_model, shared_data, tmp_path):
    import train_grpo
    from test_train_smoke import TINY_RUN

    cfg = parse_config(train_grpo.Config, ["--model", str(tiny_model), "--output-dir", str(tmp_path), *TINY_RUN,
                                                      "--task", "arith:add_1d+hh_rlhf"])
    with pytest.raises(UserError, match="--reward-model"):
        train_grpo.main(cfg)


def test_freeze_lower_layers_keeps_the_top_and_the_head_trainable(tiny_model):
    from reasoning_rl.models import load_tokenizer
    from reasoning_rl.reward_model import freeze_lower_layers, load_reward_model

    model = load_reward_model(str(tiny_model), load_tokenizer(str(tiny_model)))
    assert model.score.weight.abs().sum() == 0  # a new head starts at zero
    freeze_lower_layers(model, 1)
    layers = model.base_model.layers
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not model.base_model.embed_tokens.weight.requires_grad
    assert all(p.requires_grad for p in [*layers[1].parameters(), *model.base_model.norm.parameters(), model.score.weight])
