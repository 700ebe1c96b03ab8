"""The Hugging Face Space: where its state goes (space_environment) and what `ftapp spaces
build OUT` assembles. The bundle booting and answering is tests/ui/test_space_live.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio
import pytest
import yaml
from packaging.requirements import Requirement

from ftapp.errors import ValidationError
from ftapp.models.bundled import GGUF_FILE, bundled_gguf_path
from ftapp.settings import load_settings
from ftapp.spaces import REPO_ROOT, build_space, space_environment


def front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_with_persistent_storage_state_goes_under_data_with_backups(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    env = space_environment({"SPACE_ID": "me/ftapp"}, tmp_path / "app", persistent_dir=data)
    assert env["FTAPP_HOME"] == str(data / "ftapp")
    assert env["FTAPP_BACKUP_MINUTES"] == "30"
    assert "FTAPP_EPHEMERAL" not in env
    settings = load_settings({"SPACE_ID": "me/ftapp", **env})
    assert settings.demo and settings.auth == "hf" and settings.host == "0.0.0.0"
    assert not settings.ephemeral and settings.backup_minutes == 30


def test_without_persistent_storage_the_page_is_told_data_is_lost(tmp_path: Path):
    env = space_environment({}, tmp_path / "app", persistent_dir=tmp_path / "no-such-dir")
    assert env["FTAPP_HOME"] == str(tmp_path / "app" / "ftapp-data")
    assert load_settings(env).ephemeral
    assert "FTAPP_BACKUP_MINUTES" not in env


def test_space_variables_win_over_the_defaults(tmp_path: Path):
    mine = {"FTAPP_DEMO": "0", "FTAPP_HOME": "/elsewhere", "FTAPP_BACKEND": "vllm"}
    env = space_environment(mine, tmp_path, persistent_dir=tmp_path)
    assert "FTAPP_DEMO" not in env and "FTAPP_HOME" not in env
    assert load_settings({**mine, **env}).demo is False


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_space(tmp_path_factory.mktemp("space") / "out")


def test_the_bundle_is_a_complete_space(bundle: Path):
    meta = front_matter(bundle / "README.md")
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio.__version__  # what the tests ran is what the Space runs
    assert meta["hf_oauth"] is True
    assert (bundle / meta["app_file"]).is_file()
    requirements = (bundle / "requirements.txt").read_text().splitlines()
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        assert line in requirements
    gradio_line = next(line for line in requirements if line.startswith("gradio"))
    assert Requirement(gradio_line.split("#")[0].strip()).specifier.contains(meta["sdk_version"])
    assert (bundle / "ftapp" / "ui" / "app.py").is_file()
    assert (bundle / "ftapp" / "demo_data" / "support_replies.jsonl").is_file()
    assert not list(bundle.rglob("__pycache__"))
    gguf = bundle / "bundled" / GGUF_FILE
    assert gguf.stat().st_size == bundled_gguf_path().stat().st_size
    assert "*.gguf filter=lfs" in (bundle / ".gitattributes").read_text()


def test_the_repository_template_is_the_bundles(bundle: Path):
    for name in ("README.md", "app.py", ".gitattributes"):
        assert (bundle / name).read_bytes() == (REPO_ROOT / "spaces" / name).read_bytes()


def test_build_refuses_a_folder_with_files(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not empty"):
        build_space(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_the_build_command(tmp_path: Path, env: dict[str, str]):
    out = tmp_path / "space"
    done = subprocess.run([sys.executable, "-m", "ftapp.cli", "spaces", "build", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "app.py").is_file() and (out / "bundled" / GGUF_FILE).is_file()
    again = subprocess.run([sys.executable, "-m", "ftapp.cli", "spaces", "build", str(out)],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 2 and "not empty" in again.stderr
