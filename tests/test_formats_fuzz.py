"""Whatever bytes arrive, the importer answers with an ImportResult or a StudioError, never with
another exception, and what it returns is well formed."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures_formats import xlsx
from training.core.errors import StudioError
from training.core.limits import DatasetLimits
from training.data.formats import ImportResult, read_bytes, read_pasted

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = DatasetLimits(max_examples=20, max_field_chars=500, max_unpacked_bytes=1 << 20)
"""Small limits so the bounds are reached by small inputs too."""

EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".xlsx", ".txt")
WORKBOOK = xlsx({"Data": [["question", "answer"], ["2+2", 4], ["when", 1.5]], "Other": [["x"]]})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["text_input", "textInput", "output", "input_text", "output_text",
                         "instruction", "input", "messages", "context", "role", "author",
                         "content", "examples", "q"]) | st.text(max_size=5),
        inner, max_size=4),
    max_leaves=12,
)


def check(read) -> None:
    """Run one read: a StudioError is a fine answer; a result must be consistent."""
    try:
        result = read()
    except StudioError as error:
        assert str(error)
        return
    assert isinstance(result, ImportResult)
    assert (result.dataset is None) != (result.table is None)
    assert result.summary
    if result.table is not None:
        assert all(len(row) == len(result.table.header) for row in result.table.rows)
        assert len(set(result.table.header)) == len(result.table.header)
    else:
        keys = set(result.dataset.template.input_keys)
        assert all(set(e.fields) == keys for e in result.dataset.examples)


@FUZZ
@given(data=st.binary(max_size=2000), extension=st.sampled_from(EXTENSIONS))
def test_arbitrary_bytes_under_every_extension(data, extension):
    check(lambda: read_bytes(data, "fuzz" + extension, SMALL))


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list('ab,;|\t"\n\r {}[]:é\x00')), max_size=300),
       extension=st.sampled_from(EXTENSIONS))
def test_delimiter_and_quote_soup(text, extension):
    check(lambda: read_bytes(text.encode("utf-8", "surrogatepass"), "soup" + extension, SMALL))


@FUZZ
@given(values=st.lists(json_values, max_size=6), extension=st.sampled_from((".json", ".jsonl")))
def test_json_values_of_any_shape(values, extension):
    lines = "\n".join(json.dumps(v) for v in values)
    check(lambda: read_bytes(lines.encode(), "values" + extension, SMALL))
    check(lambda: read_bytes(json.dumps({"examples": values}).encode(), "values.json", SMALL))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(WORKBOOK) - 1), st.integers(0, 255)),
                      min_size=1, max_size=4),
       sheet=st.sampled_from([None, "Data", "Other", "Nope"]))
def test_damaged_workbooks(edits, sheet):
    data = bytearray(WORKBOOK)
    for position, value in edits:
        data[position] = value
    check(lambda: read_bytes(bytes(data), "damaged.xlsx", SMALL, sheet=sheet))


@FUZZ
@given(text=st.text(max_size=500))
def test_pasted_text(text):
    check(lambda: read_pasted(text, SMALL))
