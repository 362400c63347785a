"""The headless entry: `python app.py validate FILE` and the start-up refusals, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_app(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)


def gemini_jsonl(path: Path, rows: int) -> Path:
    lines = [json.dumps({"text_input": f"question {n}", "output": f"answer {n}"}) for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_validate_exits_0_for_a_valid_file(tmp_path):
    result = run_app("validate", str(gemini_jsonl(tmp_path / "ok.jsonl", 25)), "--no-tokens")
    assert result.returncode == 0, result.stderr
    assert "Gemini pairs JSONL, 25 examples" in result.stdout
    assert "25 examples: valid, 0 warning(s)" in result.stdout


def test_validate_exits_1_and_names_the_line_of_each_problem(tmp_path):
    path = gemini_jsonl(tmp_path / "bad.jsonl", 25)
    path.write_text(path.read_text() + '{"text_input": "x", "output": ""}\n{broken\n', encoding="utf-8")
    result = run_app("validate", str(path), "--no-tokens")
    assert result.returncode == 1
    assert "Line 27: invalid JSON" in result.stdout
    assert "Line 26: output is empty" in result.stdout


def test_validate_exits_2_when_the_file_cannot_be_read(tmp_path):
    garbage = tmp_path / "data.csv"
    garbage.write_bytes(bytes(range(256)) * 16)
    result = run_app("validate", str(garbage), "--no-tokens")
    assert result.returncode == 2
    assert "'data.csv' is not a text file" in result.stderr


def test_validate_json_report_carries_token_counts_and_truncated_rows(tmp_path, bundled_model_dir):
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    (data_dir / "models" / bundled_model_dir.name).symlink_to(bundled_model_dir)
    path = tmp_path / "long.csv"
    path.write_text("question,answer\n" + "".join(f"q{n},{'a ' * (1100 if n == 3 else 2)}\n"
                                                  for n in range(20)), encoding="utf-8")
    result = run_app("validate", str(path), "--json", "--data-dir", str(data_dir))
    report = json.loads(result.stdout)
    assert (result.returncode, report["format"], report["examples"]) == (0, "csv", 20)
    assert report["truncated_rows"] == [4]
    assert [p["code"] for p in report["problems"]] == ["few_examples", "will_truncate"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_the_studio_refuses_to_listen_off_loopback_without_a_login(tmp_path, host):
    result = run_app("--host", host, "--data-dir", str(tmp_path / "data"), timeout_s=60)
    assert result.returncode == 2
    assert f"Refusing to listen on {host} without a login" in result.stderr
    assert "--auth USER:PASSWORD" in result.stderr


def test_the_studio_refuses_to_listen_off_loopback_without_an_api_key(tmp_path):
    result = run_app("--host", "0.0.0.0", "--auth", "admin:pw", "--data-dir",
                     str(tmp_path / "data"), timeout_s=60)
    assert result.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without an API key" in result.stderr
    assert "--api-key KEY" in result.stderr


def test_a_malformed_auth_value_is_refused(tmp_path):
    result = run_app("--host", "0.0.0.0", "--auth", "admin", "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    assert "--auth 'admin' must be USER:PASSWORD, both non-empty." in result.stderr
