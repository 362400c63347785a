"""Storage: versioned datasets and uploads on a real SQLite file in tmp_path."""

import re
import sqlite3
import threading

import pytest

from storage import datasets
from storage.db import MIGRATIONS, Store, immediate, migrate, open_database, schema_version
from training.core.dataset import CHAT_TEMPLATE, Dataset, Example, InputField, PromptTemplate
from training.core.errors import DatasetError, NotFoundError, StudioError
from training.core.layout import MAX_FILE_NAME_CHARS, safe_file_name

TEMPLATE = PromptTemplate(
    preamble="Answer briefly.",
    inputs=(InputField("question", "question:"), InputField("context", "context:")),
)


def make_dataset(count: int, tag: str = "", template: PromptTemplate = TEMPLATE) -> Dataset:
    examples = tuple(
        Example({k: f"{k} {tag}{i}" for k in template.input_keys}, f"out {tag}{i}", f"row {i}")
        for i in range(1, count + 1)
    )
    return Dataset(template, examples)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as store:
        yield store


# ---- versions ---------------------------------------------------------------------------------

def test_first_save_is_version_1_and_each_later_save_appends_the_next(store):
    versions = [store.save_dataset("QA", make_dataset(3, tag=str(n))).version for n in range(3)]
    assert versions == [1, 2, 3]
    assert [v.version for v in store.list_versions("QA")] == [1, 2, 3]


def test_saved_dataset_reads_back_equal_template_and_examples_in_order(store):
    for template in (TEMPLATE, CHAT_TEMPLATE):
        saved = store.save_dataset(template.kind, make_dataset(5, template=template), note="n")
        loaded = store.get_version(template.kind)
        assert loaded == saved
        assert loaded.dataset == make_dataset(5, template=template)


def test_a_saved_version_is_unchanged_after_a_later_save(store):
    store.save_dataset("QA", make_dataset(3, tag="a"), format="csv", note="first")
    store.save_dataset("QA", make_dataset(7, tag="b"), format="jsonl", note="second")
    first = store.get_version("QA", 1)
    assert (first.format, first.note, first.example_count) == ("csv", "first", 3)
    assert first.dataset == make_dataset(3, tag="a")
    assert store.get_version("QA").version == 2


def test_empty_dataset_can_be_saved_and_read(store):
    store.save_dataset("Empty", Dataset(TEMPLATE))
    assert store.get_version("Empty").dataset == Dataset(TEMPLATE)


@pytest.mark.parametrize("statement", [
    "UPDATE dataset_versions SET note = 'changed'",
    "DELETE FROM dataset_versions",
    "UPDATE dataset_examples SET output = 'changed'",
    "DELETE FROM dataset_examples",
])
def test_triggers_block_update_and_delete_of_a_saved_version(store, statement):
    store.save_dataset("QA", make_dataset(2))
    with pytest.raises(sqlite3.IntegrityError, match="A saved dataset version cannot be changed"):
        store.db.execute(statement)
    assert store.get_version("QA").dataset == make_dataset(2)


# ---- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("", "The dataset name is empty: type a name of 1 to 80 characters."),
    ("   ", "The dataset name is empty: type a name of 1 to 80 characters."),
    ("x" * 81, "The dataset name is 81 characters long: shorten it to at most 80."),
])
def test_invalid_dataset_names_are_refused_with_a_message(store, name, message):
    with pytest.raises(DatasetError) as error:
        store.save_dataset(name, make_dataset(1))
    assert str(error.value) == message
    assert store.list_datasets() == []


def test_dataset_name_is_stripped_and_80_characters_are_allowed(store):
    assert store.save_dataset("  Padded  ", make_dataset(1)).name == "Padded"
    assert store.save_dataset("y" * 80, make_dataset(1)).name == "y" * 80


def test_names_are_unique_case_insensitively_and_keep_their_first_spelling(store):
    first = store.save_dataset("QA", make_dataset(1))
    second = store.save_dataset("Qa", make_dataset(2))
    assert (second.dataset_id, second.version, second.name) == (first.dataset_id, 2, "QA")
    assert [d.name for d in store.list_datasets()] == ["QA"]


# ---- reading ----------------------------------------------------------------------------------

def test_list_datasets_shows_latest_version_most_recently_saved_first(store):
    store.save_dataset("A", make_dataset(1), format="csv")
    store.save_dataset("B", make_dataset(2))
    store.save_dataset("A", make_dataset(4), format="jsonl")
    summaries = store.list_datasets()
    assert [(s.name, s.latest_version, s.example_count, s.format) for s in summaries] == [
        ("A", 2, 4, "jsonl"), ("B", 1, 2, ""),
    ]


def test_get_version_accepts_a_dataset_id_and_any_case_of_the_name(store):
    saved = store.save_dataset("Support Tickets", make_dataset(2))
    assert store.get_version(saved.dataset_id) == saved
    assert store.get_version("support tickets", 1) == saved


@pytest.mark.parametrize("name_or_id, version, message", [
    ("Nope", None, "There is no dataset named 'Nope': check the name or choose one from the dataset list."),
    (99, None, "There is no dataset with id 99: choose one from the dataset list."),
    ("qa", 5, "Dataset 'QA' has no version 5: choose a version from 1 to 1."),
])
def test_missing_dataset_or_version_names_what_was_asked(store, name_or_id, version, message):
    store.save_dataset("QA", make_dataset(1))
    with pytest.raises(NotFoundError) as error:
        store.get_version(name_or_id, version)
    assert str(error.value) == message


def test_timestamps_are_utc_iso_8601_with_z(store):
    saved = store.save_dataset("QA", make_dataset(1))
    upload = store.save_upload("a.csv", b"x", "csv")
    for stamp in (saved.created_at, store.list_datasets()[0].updated_at, upload.created_at):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)


def test_ten_thousand_examples_save_and_read_back_whole(store):
    big = make_dataset(10_000)
    store.save_dataset("Big", big)
    assert store.get_version("Big").dataset == big


# ---- threads ----------------------------------------------------------------------------------

def run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index):
        try:
            target(index)
        except BaseException as error:  # collected and asserted on by the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_saves_from_threads_get_distinct_consecutive_versions(store):
    versions: list[int] = []

    def save_five(index):
        for _ in range(5):
            versions.append(store.save_dataset("Shared", make_dataset(20, tag=str(index))).version)
        store.close()

    assert run_threads(8, save_five) == []
    assert sorted(versions) == list(range(1, 41))


def test_a_reader_thread_reads_complete_versions_while_a_writer_writes(store):
    store.save_dataset("Live", make_dataset(300, tag="v1-"))
    writer_done = threading.Event()
    seen: set[int] = set()

    def work(index):
        if index == 0:
            for n in range(2, 16):
                store.save_dataset("Live", make_dataset(300, tag=f"v{n}-"))
            writer_done.set()
            return
        while not seen or not writer_done.is_set():
            loaded = store.get_version("Live")
            assert loaded.dataset == make_dataset(300, tag=f"v{loaded.version}-")
            seen.add(loaded.version)

    assert run_threads(2, work) == []
    assert seen <= set(range(1, 16))


def test_each_thread_has_its_own_connection_and_close_reopens(store):
    other = []
    run_threads(1, lambda _: other.append(store.db))
    assert other[0] is not store.db
    before = store.db
    store.close()
    assert store.db is not before and store.list_datasets() == []


# ---- uploads ----------------------------------------------------------------------------------

def test_the_same_bytes_twice_reuse_one_file_and_one_row(store):
    first = store.save_upload("train.csv", b"question,output\nhi,hello\n", "csv")
    second = store.save_upload("copy.csv", b"question,output\nhi,hello\n", "csv")
    assert second == first == store.get_upload(first.id)
    assert first.path(store.data_dir).read_bytes() == b"question,output\nhi,hello\n"
    assert len([p for p in (store.data_dir / "uploads").rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("name", [
    "../../x.csv", "..\\..\\x.csv", "/etc/passwd", "..", "a/../../b.csv", "\x00.csv",
])
def test_upload_names_cannot_leave_the_uploads_folder(store, name):
    upload = store.save_upload(name, name.encode() + b"!", "csv")
    uploads = (store.data_dir / "uploads").resolve()
    assert upload.path(store.data_dir).parent.parent == uploads
    assert upload.original_name == name


@pytest.mark.parametrize("original, safe", [
    ("../../x.csv", "x.csv"), ("C:\\Users\\me\\x.tsv", "x.tsv"), ("..", "upload"),
    ("", "upload"), (".env", "env"), ("my data (1).csv", "my data _1_.csv"),
    ("données.jsonl", "données.jsonl"), ("a" * 300 + ".csv", "a" * 116 + ".csv"),
])
def test_safe_file_name(original, safe):
    assert safe_file_name(original) == safe
    assert len(safe) <= MAX_FILE_NAME_CHARS


def test_a_version_records_its_upload_and_an_unknown_upload_is_refused(store):
    upload = store.save_upload("a.csv", b"a", "csv")
    assert store.save_dataset("QA", make_dataset(1), upload_id=upload.id).upload_id == upload.id
    with pytest.raises(NotFoundError, match="^Upload 7 does not exist: import the file again.$"):
        store.save_dataset("QA", make_dataset(1), upload_id=7)
    assert store.get_version("QA").version == 1


# ---- connections and migrations --------------------------------------------------------------

def test_connections_use_wal_busy_timeout_and_foreign_keys(store):
    pragmas = [store.db.execute(f"PRAGMA {p}").fetchone()[0]
               for p in ("journal_mode", "busy_timeout", "foreign_keys")]
    assert pragmas == ["wal", 10_000, 1]
    assert (store.data_dir / "studio.db").is_file()


def test_opening_the_same_folder_twice_keeps_data_and_schema(tmp_path):
    with Store(tmp_path) as first:
        first.save_dataset("QA", make_dataset(2))
    with Store(tmp_path) as second:
        assert second.schema_version == schema_version(second.db) == len(MIGRATIONS)
        assert migrate(second.db) == len(MIGRATIONS)
        assert second.get_version("QA").dataset == make_dataset(2)


def test_a_database_at_an_older_schema_version_is_upgraded(tmp_path):
    db = open_database(tmp_path / "studio.db")
    migrate(db, MIGRATIONS[:1])
    with immediate(db):
        datasets.save_dataset(db, "Old", make_dataset(2))
    db.execute("UPDATE dataset_versions SET note = 'allowed before the triggers'")
    db.close()
    with Store(tmp_path) as store:
        assert schema_version(store.db) == len(MIGRATIONS)
        assert store.get_version("Old").note == "allowed before the triggers"
        with pytest.raises(sqlite3.IntegrityError):
            store.db.execute("UPDATE dataset_versions SET note = 'now refused'")


def test_a_database_from_a_newer_studio_is_refused(tmp_path):
    db = open_database(tmp_path / "studio.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StudioError) as error:
        Store(tmp_path)
    assert str(error.value) == (
        f"The database {tmp_path / 'studio.db'} has schema version 99, newer than this Tuning "
        f"Studio knows ({len(MIGRATIONS)}): upgrade Tuning Studio or choose another data folder."
    )


def test_version_info_by_id_names_the_dataset_without_its_examples(store):
    saved = store.save_dataset("Tickets", make_dataset(3))
    info = store.dataset_version_info(saved.id)
    assert (info.name, info.version, info.example_count) == ("Tickets", 1, 3)
    assert not hasattr(info, "dataset")


def test_version_info_of_a_missing_version_says_so(store):
    with pytest.raises(NotFoundError, match="Dataset version 99 does not exist"):
        store.dataset_version_info(99)
