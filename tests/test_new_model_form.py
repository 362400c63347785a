"""New tuned model's form is built from TuningConfig's fields by name (studio/new_model_tab.py)."""

from dataclasses import fields

import gradio as gr
import pytest

from studio.new_model_tab import LABELS, config_from_values, setting_widget, values_from_config
from training.core.config import SETTINGS, TuningConfig

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


def test_empty_boxes_take_the_defaults_and_numbers_arrive_as_floats():
    values = {**values_from_config(CHANGED), "epochs": None, "batch_size": "", "seed": 9.0}
    config = config_from_values(values)
    assert (config.epochs, config.batch_size, config.seed) == (TuningConfig().epochs,
                                                               TuningConfig().batch_size, 9)


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
        assert (widget.minimum, widget.maximum) == (setting.minimum, setting.maximum)
        if setting.maximum is not None:  # the bound the form shows is the one the check uses
            too_big = setting.maximum + (1 if setting.kind == "int" else 0.5)
            problems = TuningConfig(**{name: too_big}).problems()
            assert len(problems) == 1
            if setting.kind == "int":
                bound = int(setting.maximum)
                assert str(bound) in problems[0] or f"{bound:,}" in problems[0]
