"""New tuned model's form is built from TuningConfig's fields by name (studio/new_model_tab.py)."""

from dataclasses import fields

import gradio as gr
import pytest

from studio.new_model_tab import LABELS, config_from_values, setting_widget, values_from_config
from training.core.config import SETTINGS, ConfigError, TuningConfig

CHANGED = TuningConfig(epochs=3, batch_size=2, learning_rate=0.002, learning_rate_multiplier=0.5,
                       lora_rank=4, lora_alpha=8.0, lora_dropout=0.1, target_modules=("q_proj",),
                       max_input_tokens=256, max_output_tokens=64, eval_rows=10,
                       eval_interval_steps=5, early_stopping=True, early_stopping_patience=2,
                       select_best_checkpoint=True, seed=7, precision="fp32")


def test_every_config_field_has_a_setting_and_a_label_in_the_same_order():
    names = [f.name for f in fields(TuningConfig)]
    assert list(SETTINGS) == names and set(LABELS) == set(names)


def test_the_form_values_round_trip_by_name():
    values = values_from_config(CHANGED)
    assert values["target_modules"] == ["q_proj"] and values["precision"] == "fp32"
    assert config_from_values(values) == CHANGED
    assert config_from_values(dict(reversed(list(values.items())))) == CHANGED


def test_numbers_arrive_as_floats_and_become_whole_numbers():
    config = config_from_values({**values_from_config(CHANGED), "seed": 9.0, "epochs": "4"})
    assert (config.seed, config.epochs) == (9, 4)


def test_empty_and_bad_boxes_are_named_with_their_range_all_at_once():
    values = {**values_from_config(CHANGED), "epochs": None, "batch_size": 0,
              "learning_rate": -1, "lora_rank": 2.5, "seed": "x"}
    with pytest.raises(ConfigError) as raised:
        config_from_values(values)
    lines = str(raised.value).splitlines()
    assert lines[0] == "Some settings need changing:"
    assert lines[1:] == [
        "- Epochs is empty: enter a whole number from 1 to 1000.",
        "- LoRA rank is 2.5: enter a whole number from 1 to 1024.",
        "- Seed is 'x': enter a whole number from 0 to 4294967295.",
        "- Batch size is 0: use a whole number from 1 to 1024.",
        "- Learning rate is -1: use a number above 0 and at most 1 (0.001 is the default; "
        "smaller for small datasets).",
    ]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_widget_shows_the_default_range_and_choices_of_its_field(name):
    with gr.Blocks():
        widget = setting_widget(name)
    setting, default = SETTINGS[name], getattr(TuningConfig(), name)
    if setting.kind == "choices":
        assert widget.value == list(default)
        assert [value for _, value in widget.choices] == list(setting.choices)
    else:
        assert widget.value == default
    if isinstance(widget, gr.Number):
        # Gradio's own range check would refuse a value without naming the setting: the form's
        # check does it, and the box shows the range.
        assert (widget.minimum, widget.maximum) == (None, None)
        if name != "eval_rows":
            assert widget.info == setting.allowed[0].upper() + setting.allowed[1:]  # English here
        if setting.maximum is not None:  # the bound the form shows is the one the check uses
            too_big = setting.maximum + (1 if setting.kind == "int" else 0.5)
            problems = TuningConfig(**{name: too_big}).problems()
            assert len(problems) == 1
            if setting.kind == "int":
                bound = int(setting.maximum)
                assert str(bound) in problems[0] or f"{bound:,}" in problems[0]
