"""What a training run needs, written to a folder so the training code never opens the
database: `job.json` (the job, its config, the dataset version, the base model and the
starting adapter) and `data.jsonl` (the frozen version's examples, one a line, as the trainer
reads them). The worker writes it (ftapp.training.runs); the local child reads it from its
folder, and a Ray job gets the folder as its working directory.

The base model and the starting adapter are given by path: on a cluster those paths must be
readable from every node (a shared filesystem), or the model a Hub id the nodes download.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftapp.records import DatasetVersion, Job, JobStatus
from ftapp.training.config import TrainConfig, config_from_dict

SPEC_FILE = "job.json"
DATA_FILE = "data.jsonl"


@dataclass(frozen=True)
class RunSpec:
    job: Job
    config: TrainConfig
    version: DatasetVersion
    base_model_path: str
    start_adapter_path: str | None

    def rows(self, folder: Path) -> list[dict[str, Any]]:
        with (folder / DATA_FILE).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]


def write_spec(folder: Path, spec: RunSpec, rows: Iterable[dict[str, Any]]) -> None:
    """Write the run's folder: the job and what it trains on."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / DATA_FILE).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    text = {
        "job": asdict(spec.job),
        "config": spec.config.to_dict(),
        "version": asdict(spec.version),
        "base_model_path": spec.base_model_path,
        "start_adapter_path": spec.start_adapter_path,
    }
    (folder / SPEC_FILE).write_text(json.dumps(text, indent=2, default=str), encoding="utf-8")


def read_spec(folder: Path) -> RunSpec:
    values = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    job = values["job"]
    return RunSpec(
        job=Job(**{**job, "status": JobStatus(job["status"])}),
        config=config_from_dict(values["config"]),
        version=DatasetVersion(**values["version"]),
        base_model_path=values["base_model_path"],
        start_adapter_path=values["start_adapter_path"],
    )
