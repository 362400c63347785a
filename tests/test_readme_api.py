"""The README's API examples work as shown: its curl block and its Python block, taken from the
README itself, run against a studio serving the bundled model (only the port is changed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.runner_helpers import REPO, api_studio, seed_bundled_model

README_PORT = "http://127.0.0.1:7860"


def api_blocks() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S))
    assert set(blocks) == {"bash", "python"}
    return blocks


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory, bundled_model_dir):
    root = tmp_path_factory.mktemp("readme")
    seed_bundled_model(root / "data", bundled_model_dir)
    with api_studio(root / "data", root / "studio.log") as url:
        yield url


def run_block(command: list[str], code: str, url: str) -> str:
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([*command, code.replace(README_PORT, url)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_readme_openai_example_lists_and_answers_whole_and_streamed(studio_url):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## OpenAI-compatible API\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    lines = run_block([sys.executable, "-c"], code, studio_url).splitlines()
    assert "'SmolLM2-135M-Instruct'" in lines[0]
    assert "Paris" in lines[1]
    assert lines[2] == lines[1]  # streamed, the same greedy answer


def test_the_readme_curl_example_tunes_answers_streams_and_deletes(studio_url):
    output = run_block(["bash", "-e", "-o", "pipefail", "-c"], api_blocks()["bash"], studio_url)
    assert output.startswith('{"name":"tunedModels/next-number/operations/')
    assert '"candidates":[{"content":{"parts":[{"text":' in output
    assert "\r\n\r\ndata: {" in output or output.count("data: {") >= 1
    assert output.rstrip().endswith("{}")  # the deletion


def test_the_readme_python_example_tunes_answers_and_deletes(studio_url):
    lines = run_block([sys.executable, "-W", "ignore", "-c"], api_blocks()["python"], studio_url).splitlines()
    assert lines[0] == "30 steps"  # 40 examples, batch size 4, 3 epochs
    assert lines[1].startswith("ACTIVE [")
    assert len(lines) == 3 and lines[2].strip()
