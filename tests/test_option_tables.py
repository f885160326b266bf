"""Every entry point refuses a bad option value in one line, with exit status 2, before any model loads, and leaves no
output folder: a table of bad values per flag, walked for train_grpo, train_ppo, train_dpo (online and offline),
evaluate and train_reward_model."""

import pytest

from test_user_errors import one_line_error, run_script

COMMON_RL = [  # options every online trainer has (GRPO's values; PPO and DPO add their own below)
    (["--steps", "0"], "--steps"), (["--steps", "-3"], "--steps"), (["--prompts-per-step", "0"], "--prompts-per-step"),
    (["--max-new-tokens", "0"], "--max-new-tokens"), (["--micro-batch-size", "0"], "--micro-batch-size"),
    (["--lr", "0"], "--lr"), (["--lr", "-1e-5"], "--lr"), (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"), (["--top-p", "0"], "--top-p"), (["--top-p", "1.5"], "--top-p"),
    (["--vllm-memory-fraction", "1.5"], "--vllm-memory-fraction"), (["--vllm-memory-fraction", "0"], "--vllm-memory-fraction"),
    (["--vllm-tensor-parallel-size", "0"], "--vllm-tensor-parallel-size"), (["--backend", "tensorrt"], "--backend"),
    (["--template", "fancy"], "--template"), (["--optimizer-state", "some"], "--optimizer-state"),
    (["--curriculum-replay", "1"], "--curriculum-replay"), (["--curriculum-threshold", "0"], "--curriculum-threshold"),
    (["--curriculum-window", "0"], "--curriculum-window"), (["--curriculum-patience", "-1"], "--curriculum-patience"),
    (["--explore-fraction", "1.5"], "--explore-fraction"), (["--retry-weight", "0"], "--retry-weight"),
    (["--max-refills", "-1"], "--max-refills"), (["--overlong-cache", "-1"], "--overlong-cache"),
    (["--overlong-cache", "64"], "--overlong-cache"), (["--warmup-steps", "-1"], "--warmup-steps"),
    (["--weight-decay", "-0.1"], "--weight-decay"), (["--max-grad-norm", "0"], "--max-grad-norm"),
    (["--lora-rank", "-1"], "--lora-rank"), (["--lora-alpha", "0"], "--lora-alpha"),
    (["--eval-problems", "-1"], "--eval-problems"), (["--eval-samples", "-1"], "--eval-samples"),
    (["--eval-every", "-1"], "--eval-every"), (["--save-every", "0"], "--save-every"),
    (["--sample-every", "-1"], "--sample-every"), (["--train-problems", "0"], "--train-problems"),
    (["--time-limit", "-5"], "--time-limit"), (["--verify-timeout", "0"], "--verify-timeout"),
    (["--verify-budget", "0"], "--verify-budget"), (["--reward-model-scale", "inf"], "--reward-model-scale"),
    (["--rollout-correction", "tis"], "--rollout-correction"), (["--shard", "zero3"], "--shard"),
    (["--shard-group-size", "-1"], "--shard-group-size"),
    (["--rollout-correction-threshold", "1"], "--rollout-correction-threshold"),
    (["--rollout-staleness", "-1"], "--rollout-staleness"),
    (["--rollout-correction", "token_tis", "--backend", "hf"], "--backend vllm"),
    (["--heldout-fraction", "1"], "--heldout-fraction"), (["--heldout-fraction", "0"], "--heldout-fraction"),
    (["--question-field", "q"], "--task jsonl"), (["--task", "jsonl"], "--data-path"), (["--task", "math500"], "math500"),
    (["--task", "gsm9k"], "gsm9k"), (["--rewards", "accuracy=x"], "accuracy"), (["--rewards", "brevityy"], "brevityy"),
    (["--preset", "nonsense"], "nonsense"),
]
POLICY_GRADIENT = [
    (["--mu", "0"], "--mu"), (["--mini-batches", "0"], "--mini-batches"), (["--beta", "-0.1"], "--beta"),
    (["--clip-low", "1"], "--clip-low"), (["--clip-high", "-0.2"], "--clip-high"),
    (["--loss-aggregation", "mean"], "--loss-aggregation"), (["--loss-type", "ppo2"], "--loss-type"),
]
TABLES = {
    "train_grpo": COMMON_RL + POLICY_GRADIENT + [(["--group-size", "1"], "--group-size")],
    "train_ppo": COMMON_RL + POLICY_GRADIENT + [
        (["--gamma", "1.5"], "--gamma"), (["--lam", "-0.1"], "--lam"), (["--kl-coef", "-1"], "--kl-coef"),
        (["--value-clip", "0"], "--value-clip"), (["--critic-lr", "0"], "--critic-lr"),
        (["--critic-trainable-layers", "-1"], "--critic-trainable-layers"), (["--loss-type", "gspo"], "gspo")],
    "train_dpo": COMMON_RL + [
        (["--dpo-beta", "0"], "--dpo-beta"), (["--pairs-per-group", "0"], "--pairs-per-group"), (["--epochs", "0"], "--epochs"),
        (["--pair-micro-batch", "0"], "--pair-micro-batch"), (["--group-size", "1"], "--group-size"),
        (["--pairs", "hh-rlhf", "--pair-batch-size", "0"], "--pair-batch-size"),
        (["--pairs", "hh-rlhf", "--heldout-fraction", "1.5"], "--heldout-fraction"),
        (["--pairs", "hh-rlhf", "--max-prompt-tokens", "0"], "--max-prompt-tokens"),
        (["--pairs", "hh-rlhf", "--train-pairs", "-1"], "--train-pairs"), (["--pairs", "hh-rlhf", "--lr", "0"], "--lr")],
    "evaluate": [
        (["--n", "0"], "--n"), (["--k", "0"], "--k"), (["--k", "a"], "--k"), (["--k", "8", "--n", "4"], "--k"),
        (["--temperature", "-1"], "--temperature"), (["--temperature", "0", "--n", "4"], "--temperature"),
        (["--top-p", "0"], "--top-p"), (["--max-new-tokens", "0"], "--max-new-tokens"), (["--chunk-size", "0"], "--chunk-size"),
        (["--limit", "0"], "--limit"), (["--vllm-memory-fraction", "2"], "--vllm-memory-fraction"),
        (["--max-model-len", "0"], "--max-model-len"), (["--vllm-tensor-parallel-size", "0"], "--vllm-tensor-parallel-size"),
        (["--template", "fancy"], "--template"), (["--backend", "tensorrt"], "--backend"), (["--benchmark", "gsm9k"], "gsm9k"),
        (["--benchmark", "jsonl"], "--data-path"), (["--model", "no-such-model"], "no-such-model")],
    "train_reward_model": [
        (["--heldout-fraction", "0"], "--heldout-fraction"), (["--heldout-fraction", "1"], "--heldout-fraction"),
        (["--train-pairs", "-1"], "--train-pairs"), (["--max-length", "0"], "--max-length"), (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"), (["--lr", "0"], "--lr"), (["--warmup-steps", "-1"], "--warmup-steps"),
        (["--weight-decay", "-1"], "--weight-decay"), (["--max-grad-norm", "0"], "--max-grad-norm"),
        (["--trainable-layers", "-1"], "--trainable-layers"), (["--eval-every", "-1"], "--eval-every")],
}
CASES = [(script, flags, word) for script, table in TABLES.items() for flags, word in table]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model or engine load fails the test: every value must be refused before one."""
    import transformers

    import reasoning_rl.run

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", forbidden)
    monkeypatch.setattr(reasoning_rl.run, "make_generator", forbidden)


@pytest.mark.parametrize("script, flags, word", CASES, ids=[f"{s}:{' '.join(f)}" for s, f, _ in CASES])
def test_a_bad_value_is_one_line_with_status_2_before_any_model_loads(script, flags, word, tmp_path, capsys,
                                                                         no_model_loads):
    out = tmp_path / "run"
    code, err = run_script(script, [*flags, "--output-dir", str(out)], capsys)
    assert code == 2, err
    one_line_error(err, word)
    assert not out.exists()


def test_the_tables_cover_every_entry_point():
    assert set(TABLES) == {"train_grpo", "train_ppo", "train_dpo", "evaluate", "train_reward_model"}
    assert len(CASES) > 150
