"""The pre-flight memory plan (reasoning_rl/memory_plan.py, scripts/plan.py): parameter counts from config.json
against real models, what sharding divides, the suggested change, and the script itself."""

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from reasoning_rl.memory_plan import PUBLISHED, ModelShape, Setting, fits, kv_cache_needed, over_budget, plan, suggest

ROOT = Path(__file__).resolve().parent.parent
QWEN_LIKE = dict(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False, model_type="qwen2")


def real_count(config: dict, lora_rank: int = 0) -> int:
    """Parameters (or LoRA's trainable ones) of the transformers model built from ``config``."""
    import transformers

    cls = transformers.Qwen2ForCausalLM if config.get("model_type") == "qwen2" else transformers.LlamaForCausalLM
    conf = (transformers.Qwen2Config if cls is transformers.Qwen2ForCausalLM else transformers.LlamaConfig)(**config)
    model = cls(conf)
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_rank, target_modules="all-linear", task_type="CAUSAL_LM"))
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", [QWEN_LIKE, {**QWEN_LIKE, "model_type": "llama", "tie_word_embeddings": True}])
def test_parameter_counts_match_the_models_transformers_builds(config):
    shape = ModelShape.from_config(config)
    assert shape.parameters == real_count(config)
    assert shape.lora_parameters(4) == real_count(config, lora_rank=4)


def test_the_embedded_models_count_matches_its_weights(tiny_model):
    import json

    from reasoning_rl.models import load_policy

    config = json.loads((tiny_model / "config.json").read_text())
    assert ModelShape.from_config(config).parameters == sum(p.numel() for p in load_policy(str(tiny_model)).parameters())


def test_published_qwen_configs_give_the_published_sizes():
    sizes = {name: ModelShape.from_config(c).parameters / 1e9 for name, c in PUBLISHED.items()}
    assert [round(v, 2) for v in sizes.values()] == [0.49, 1.54, 7.62, 32.76]  # Qwen2.5's model cards


def test_fsdp_divides_the_training_state_and_ddp_adds_its_buckets():
    shape = ModelShape.from_config(PUBLISHED["Qwen/Qwen2.5-7B-Instruct"])
    one = plan(shape, Setting(processes=1, beta=0.04))
    ddp = plan(shape, Setting(processes=8, beta=0.04))
    fsdp = plan(shape, Setting(processes=8, beta=0.04, shard="fsdp"))
    for part in ("weights", "gradients", "AdamW moments", "reference"):
        assert fsdp[part] == pytest.approx(one[part] / 8) and ddp[part] == one[part]
    assert ddp["DDP gradient buckets"] == one["gradients"] and fsdp["DDP gradient buckets"] == 0
    assert 0 < fsdp["gathered for compute (FSDP)"] < one["weights"]
    # the backward holds the largest unit's gradients twice (its own and the reduce-scatter's input): for 7B the root
    assert fsdp["unsharded gradients (FSDP)"] == 8 * shape.root_parameters and ddp["unsharded gradients (FSDP)"] == 0
    lora = plan(shape, Setting(processes=8, shard="fsdp", lora_rank=16))
    assert lora["unsharded gradients (FSDP)"] == pytest.approx(8 * shape.lora_parameters(16) / shape.layers)
    hsdp = plan(shape, Setting(processes=16, processes_per_machine=8, beta=0.04, shard="hsdp"))
    assert hsdp["weights"] == pytest.approx(one["weights"] / 8)  # sharded within a machine, replicated across


def test_a_7b_model_needs_sharding_on_8_gpus_and_the_suggestion_fits():
    shape = ModelShape.from_config(PUBLISHED["Qwen/Qwen2.5-7B-Instruct"])
    ddp = Setting(processes=8, beta=0.04)
    assert not fits(shape, ddp)
    change = suggest(shape, ddp)
    assert change == "--shard fsdp" and fits(shape, replace(ddp, shard="fsdp"))
    assert suggest(shape, Setting(processes=1, device_gib=1.0)) is None  # the engine alone needs more than 1 GiB


def test_gradient_checkpointing_and_lora_shrink_what_they_should():
    shape = ModelShape.from_config(PUBLISHED["Qwen/Qwen2.5-1.5B-Instruct"])
    base = plan(shape, Setting())
    assert plan(shape, Setting(gradient_checkpointing=True))["activations"] < base["activations"] / 4
    lora = plan(shape, Setting(lora_rank=16))
    assert lora["weights"] == base["weights"] and lora["AdamW moments"] < base["AdamW moments"] / 50
    assert kv_cache_needed(shape, Setting(processes=2)) == pytest.approx(kv_cache_needed(shape, Setting()) / 2)


def test_plan_script_prints_the_table_in_seconds_without_loading_weights():
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "plan.py"), "--model", "smollm2-135m-instruct",
                           "--processes", "8", "--device-memory-gib", "80"], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - start < 30 and "safetensors" not in done.stdout
    for row in ("weights", "gradients", "AdamW moments", "engine KV cache", "activations", "logits", "total", "fits"):
        assert row in done.stdout
    over = subprocess.run([sys.executable, str(ROOT / "scripts" / "plan.py"), "--model", "Qwen/Qwen2.5-32B-Instruct",
                           "--processes", "8", "--device-memory-gib", "80"], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert over.returncode == 0 and "does not fit" in over.stdout  # a 32B model: 16 GPUs, and an engine over 4 of them
    assert "add --shard fsdp --gradient-checkpointing --vllm-tensor-parallel-size 4 on 16 processes" in over.stdout


def test_a_setting_that_cannot_fit_gets_one_line_naming_the_change():
    """What the trainers' pre-flight prints (a warning on the CPU) or raises (on a GPU)."""
    seven = ModelShape.from_config(PUBLISHED["Qwen/Qwen2.5-7B-Instruct"])
    message = over_budget(seven, Setting(processes=8, beta=0.04))
    assert message.startswith("this setting needs about 213.8 GiB per rank and the gpu has 80 GiB")
    assert message.endswith("add --shard fsdp") and "\n" not in message
    assert over_budget(seven, Setting(processes=8, beta=0.04, shard="fsdp")) is None


def test_a_model_that_is_neither_a_folder_nor_a_hub_name_is_one_line():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "plan.py"), "--model", "/no/such/model"],
                          capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "/no/such/model" in done.stderr


def test_compare_measures_a_run_by_its_highest_step_peak(tiny_model, tmp_path, capsys):
    """A run's peak is the higher of results.json's and its steps' (older runs' results.json missed earlier steps)."""
    import dataclasses
    import json

    import plan as plan_script
    import train_grpo

    from reasoning_rl.config import parse_config

    folder = tmp_path / "run"
    folder.mkdir()
    cfg = parse_config(train_grpo.Config, ["--model", str(tiny_model)])
    (folder / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "processes": 1, "algorithm": "grpo"}))
    (folder / "results.json").write_text(json.dumps({"peak_memory_gib_per_rank": [2.0]}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "memory/step_peak_gib": g}) + "\n"
                                                  for s, g in ((1, 3.0), (2, 2.5))))
    (row,) = plan_script.compare([str(folder)], None)
    assert row["measured_gib"] == 3.0 and abs(row["error_percent"] - 100 * (row["planned_gib"] - 3.0) / 3.0) < 0.5
    (folder / "results.json").write_text(json.dumps({"peak_memory_gib_per_rank": [2.0, 3.5]}))
    assert plan_script.compare([str(folder)], None)[0]["measured_gib"] == 3.5
