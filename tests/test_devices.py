"""Device placement: every parameter and every tensor that enters a model or a loss is on ``accelerator.device``.

On this CPU machine that device is the CPU; on a GPU machine the same test runs on ``cuda:0``, so the path
it checks is the one a GPU user runs (the trainer has no separate GPU code).
"""

import pytest
import torch

import reasoning_rl.advantage_estimators as estimators
import reasoning_rl.losses as losses
from reasoning_rl.advantage_estimators import GAECritic, GroupRelative
from reasoning_rl.models import load_policy, load_tokenizer
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from runtime.distributed import Dist
from test_efficient_update import MIXED, batch


def tensors(args, kwargs):
    """Every tensor among the arguments, looking into tuples, lists and dicts, and into a key/value cache."""
    stack, found = [*args, *kwargs.values()], []
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif hasattr(x, "layers"):  # transformers' DynamicCache
            stack.extend(t for layer in x.layers for t in (layer.keys, layer.values) if t is not None)
    return found


def watch_devices(module: torch.nn.Module, seen: list) -> None:
    """Record the device of every tensor that enters any submodule's forward."""

    def hook(submodule, args, kwargs):
        seen.extend(t.device for t in tensors(args, kwargs))

    for m in module.modules():
        m.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_every_parameter_and_batch_tensor_is_on_the_accelerator_device(tiny_model, monkeypatch, algorithm):
    dist = Dist.start()
    seen = []

    def watched(loss):
        def wrapper(*args, **kwargs):
            seen.extend(t.device for t in tensors(args, kwargs))
            return loss(*args, **kwargs)
        return wrapper

    # the update takes its loss from losses.POLICY_LOSSES when it is set up
    monkeypatch.setitem(losses.POLICY_LOSSES, "clipped", watched(losses.POLICY_LOSSES["clipped"]))
    monkeypatch.setattr(estimators, "value_loss", watched(estimators.value_loss))
    policy = load_policy(str(tiny_model)).to(dist.device)
    # GRPO with a KL term (reference log-probs), mu = 2 (old log-probs) and the shared-prompt forward; PPO with its critic
    cfg = PolicyGradientConfig(autocast=False, micro_batch_size=3, beta=0.04 if algorithm == "grpo" else 0.0, mu=2)
    update = PolicyGradient(cfg, GroupRelative() if algorithm == "grpo" else GAECritic(kl_coef=0.05))
    reference = load_policy(str(tiny_model)).to(dist.device).eval()
    update.setup(policy, reference, load_tokenizer(str(tiny_model)), torch.optim.AdamW(policy.parameters()), str(tiny_model), dist)
    models = [policy, reference, *update.estimator.models]
    for model in models:
        watch_devices(model, seen)
    metrics = update(batch(MIXED), step=1)

    assert metrics["train/grad_norm"] > 0
    assert len(seen) > 100  # the hooks saw the forward passes and the losses
    assert {str(d) for d in seen} == {str(dist.device)}
    assert {str(p.device) for model in models for p in model.parameters()} == {str(dist.device)}
    assert {str(p.grad.device) for p in policy.parameters() if p.grad is not None} == {str(dist.device)}
