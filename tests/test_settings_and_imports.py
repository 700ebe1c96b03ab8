"""Settings from the environment; heavy libraries stay out of the web layer's imports."""

import subprocess
import sys

import pytest

from ftapp.errors import ValidationError
from ftapp.settings import load_settings


def test_ftapp_home_relocates_all_state(tmp_path):
    settings = load_settings({"FTAPP_HOME": str(tmp_path / "elsewhere"), "FTAPP_PORT": "9000"})
    assert settings.db_path == tmp_path / "elsewhere" / "ftapp.db"
    assert settings.models_dir.parent == settings.home
    assert settings.port == 9000 and settings.host == "127.0.0.1"


def test_bad_number_in_environment():
    with pytest.raises(ValidationError, match="FTAPP_PORT must be a whole number"):
        load_settings({"FTAPP_PORT": "eighty"})


def test_ui_import_does_not_load_heavy_libraries():
    code = (
        "import sys, ftapp.ui.app; "
        "heavy = ('torch', 'transformers', 'peft', 'trl', 'vllm'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == ""


def test_gradio_is_only_imported_by_the_ui():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "ftapp", "app.py"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
