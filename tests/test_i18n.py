"""The interface text exists in all three languages, for the same keys."""

from studio.i18n import EN, FR, ZH

SAME_IN_EVERY_LANGUAGE = {"new.lora_alpha", "new.lora_dropout"}  # technical names


def test_every_language_has_every_key():
    assert set(ZH) == set(EN) and set(FR) == set(EN)


def test_no_text_is_empty():
    assert all(value.strip() for table in (EN, ZH, FR) for value in table.values())


def test_the_chinese_text_is_written_in_chinese():
    def has_cjk(text):
        return any("\u4e00" <= c <= "\u9fff" for c in text)

    assert [k for k, v in ZH.items() if not has_cjk(v) and k not in SAME_IN_EVERY_LANGUAGE] == []
