"""The Hugging Face Space: its environment (demo mode, sign-in, where state lives) and the
bundle `ftapp spaces build OUT` assembles from the `spaces/` templates and this package.

A Space's disk is wiped on restart unless persistent storage is attached, which Spaces mount
at /data. With it, state goes to /data/ftapp with a database backup every 30 minutes; without
it, the page warns that everything is lost on restart (FTAPP_EPHEMERAL).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ftapp.errors import ValidationError
from ftapp.models.bundled import GGUF_FILE, bundled_gguf_path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "spaces"
TEMPLATE_FILES = ("README.md", "app.py", ".gitattributes")
PERSISTENT_DIR = Path("/data")
BACKUP_MINUTES = 30


def space_environment(
    env: Mapping[str, str], app_dir: Path | None = None, persistent_dir: Path = PERSISTENT_DIR
) -> dict[str, str]:
    """The FTAPP_* settings a Space runs with. Values the Space's variables already set win."""
    app_dir = app_dir or Path(__file__).resolve().parent.parent
    chosen = {
        "FTAPP_DEMO": "1",
        "FTAPP_HOST": "0.0.0.0",  # Spaces route to port 7860 of the container
        "FTAPP_PORT": env.get("PORT") or "7860",
    }
    if _writable_dir(persistent_dir):
        chosen["FTAPP_HOME"] = str(persistent_dir / "ftapp")
        chosen["FTAPP_BACKUP_MINUTES"] = str(BACKUP_MINUTES)
    else:
        chosen["FTAPP_HOME"] = str(app_dir / "ftapp-data")
        chosen["FTAPP_EPHEMERAL"] = "1"
    gguf = app_dir / "bundled" / GGUF_FILE
    if gguf.is_file():
        chosen["FTAPP_BUNDLED_GGUF"] = str(gguf)
    return {name: value for name, value in chosen.items() if not env.get(name)}


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def build_space(out: Path) -> Path:
    """Assemble a Space that works when pushed as it is: the templates (README with the Spaces
    front matter, app.py, .gitattributes), requirements.txt, the `ftapp` package and the
    bundled model's GGUF file. `out` must not exist or be empty."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValidationError(f"{out} is not empty: give a new or empty folder")
    missing = [name for name in TEMPLATE_FILES if not (TEMPLATES / name).is_file()]
    if missing or not (REPO_ROOT / "requirements.txt").is_file():
        raise ValidationError(
            f"the Space templates are missing from {TEMPLATES} ({', '.join(missing) or 'none'}) "
            "or requirements.txt is: build from a checkout of ftapp"
        )
    gguf = bundled_gguf_path()
    out.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATE_FILES:
        shutil.copy2(TEMPLATES / name, out / name)
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    (out / "requirements.txt").write_text(
        "# ftapp's requirements, copied by `ftapp spaces build`. The Space's own gradio\n"
        "# (sdk_version in README.md) must satisfy the gradio line below.\n" + requirements
    )
    shutil.copytree(
        Path(__file__).resolve().parent,
        out / "ftapp",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (out / "bundled").mkdir()
    shutil.copy2(gguf, out / "bundled" / GGUF_FILE)
    return out
