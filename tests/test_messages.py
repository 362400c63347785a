"""The server's message catalogue: every key in every language, with the same values to fill in,
every key the code says exists, and a reader sees a job's log in their own language."""

import re
import string
from pathlib import Path

import pytest

from storage.db import Store
from studio.library_tab import DATASET_COLUMNS, JOB_COLUMNS
from studio.locale import language_of
from tests.runner_helpers import word_dataset
from training.core.config import SETTINGS, TuningConfig
from training.core.dataset import Dataset, Example, PromptTemplate
from training.core.messages import CATALOGUE, EN, LANGUAGE, LANGUAGES, say
from training.core.states import STATES
from training.data.validation import validate

ROOT = Path(__file__).resolve().parent.parent


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_is_in_every_language_with_the_same_values(language):
    table = CATALOGUE[language]
    assert sorted(set(EN) - set(table)) == [] and sorted(set(table) - set(EN)) == []
    # a language may leave a value out (grammar), never ask for one that is not given
    assert {k for k in EN if not placeholders(table[k]) <= placeholders(EN[k])} == set()
    assert [k for k, v in table.items() if not v.strip()] == []


def keys_in_code() -> set[str]:
    found = set()
    for path in [*ROOT.joinpath("training").rglob("*.py"), *ROOT.joinpath("studio").rglob("*.py"),
                 *ROOT.joinpath("storage").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"""say\(\s*["']([a-z_.]+)["']""", text))
        found |= set(re.findall(r"""\.of\(\s*["']([a-z_.]+)["']""", text))
        found |= set(re.findall(r"""\.log\(\s*(?:[\w.]+,\s*)?["'](log\.[a-z_]+)["']""", text))
    return found


def test_every_key_the_code_says_is_in_the_catalogue():
    used = keys_in_code()
    used |= {f"library.state.{state}" for state in STATES}
    used |= {f"library.col.{column}" for column in (*JOB_COLUMNS, *DATASET_COLUMNS)}
    used |= {f"log.{reason}_{where}" for reason in ("resumed", "restarted")
             for where in ("checkpoint", "start")}
    used |= {f"log.cancelled_{kind}{at}" for kind in ("partial", "empty") for at in ("", "_at")}
    used |= {f"count.{unit}_{n}" for unit in ("row", "line", "item", "column", "example")
             for n in ("one", "many")}
    used |= {f"{kind}.{unit}" for kind in ("place", "remove", "unit")
             for unit in ("row", "line", "item", "example")}
    used |= {f"validation.{key}" for key in (
        "empty_input_chat", "empty_input_one", "empty_input_all", "input_too_long_chat",
        "input_too_long_one", "input_too_long_all", "truncate_both", "truncate_input",
        "truncate_output", "more_row", "more_line", "more_item", "more_example")}
    used |= {f"setting.{name}" for name in SETTINGS}
    used |= {f"state.word.{state}" for state in STATES}
    used |= {f"refusal.cancel.{state}" for state in ("cancelling", "cancelled", "succeeded", "failed")}
    used |= {f"refusal.verb.{event}" for event in ("finish", "fail", "cancelled", "interrupt")}
    used |= {f"config.{name}" for name in SETTINGS if SETTINGS[name].kind != "bool"
             and name not in ("target_modules",)} | {"config.target_modules"}
    used |= {f"validation.more.{code}" for code in (
        "empty_input", "empty_output", "input_too_long", "output_too_long", "duplicate",
        "conflicting_outputs", "will_truncate", "other")}
    used |= {f"request.{what}_error_{n}" for what in ("dataset", "eval_dataset")
             for n in ("one", "many")}
    used |= {f"training.target_modules_{n}" for n in ("one", "many")}
    used |= {f"training.what_{what}" for what in ("training", "evaluation")}
    used |= {"export.no_adapter", "export.not_ready", "target.no_checkpoint",
             "target.no_checkpoint_yet", "model.no_memory_gpu", "model.no_memory",
             "disk.no_space_resume", "model.bundled_no_space", "training.out_of_memory",
             "training.out_of_memory_gpu", "target.not_ready_checkpoints", "target.not_ready",
             "target.no_final_adapter", "target.no_adapter", "cache.one", "cache.many"}
    used |= {f"gguf.step_name.{step}" for step in ("merge", "convert", "quantize")}
    assert len(used) > 40
    assert sorted(used - set(EN)) == []


class Request:
    def __init__(self, cookies=None, headers=None):
        self.cookies, self.headers = cookies or {}, headers or {}


def test_the_page_language_comes_from_its_cookie_then_its_browser():
    assert language_of(Request({"studio-lang": "zh-CN"}, {"accept-language": "fr"})) == "zh-CN"
    assert language_of(Request({}, {"accept-language": "fr-FR,fr;q=0.9"})) == "fr"
    assert language_of(Request({"studio-lang": "de"}, {"accept-language": "de"})) == "en"
    assert language_of(None) == "en"


def test_a_job_log_is_said_in_each_readers_language(data_dir):
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset())
        job = store.create_job(display_name="Words", description="", base_model="base",
                               dataset_version_id=version.id, config=TuningConfig())
        store.log(job.id, "log.epoch", epoch=1, epochs=2, step=10, loss=0.5, seconds=3.25)
        store.append_log(job.id, "Traceback (most recent call last): ...")
        english, trace = store.log_lines(job.id)
    assert english.line == "Epoch 1 of 2 done at step 10: mean loss 0.5000, 3.2 s of training."
    token = LANGUAGE.set("fr")
    try:
        assert english.said() == ("Époque 1 sur 2 terminée à l'étape 10 : perte moyenne 0.5000, "
                                  "3.2 s d'entraînement.")
        assert trace.said() == "Traceback (most recent call last): ..."
        assert say("report.ready", examples=3) == "Prêt : 3 exemples, aucune erreur"
        report = validate(Dataset(PromptTemplate(), (Example({"input": "a"}, "", "row 2"),)))
        assert [p.message for p in report.problems][-1] == (
            "Ligne 2 : la sortie est vide ; écrivez la réponse que le modèle doit donner ou "
            "supprimez la ligne.")
    finally:
        LANGUAGE.reset(token)
