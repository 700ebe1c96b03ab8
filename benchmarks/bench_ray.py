"""What the Ray path costs against the local path, for the same job on the bundled model, in
one run: wall time from the worker taking the job to its first training step on the Train
tab (a row in job_metrics), and to the job's end (the adapter registered).

    .venv/bin/python benchmarks/bench_ray.py [--steps 20] [--repeats 2]

Both go through the real worker (`Worker.run_once`): locally a child process; on Ray a job
submitted to a one-node Ray cluster on 127.0.0.1 (ftapp.training.ray_head, 2 CPUs), trained
by one Ray Train worker with one CPU thread, as the local child is given (threads=1), so the
difference is Ray's overhead (job submission, runtime environment, the Train controller and
worker group, checkpoints reported to and copied back from the storage), not compute. The
local path is the baseline: the ratio is the Ray time over the local time. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftapp.models.bundled import prepare_bundled_model  # noqa: E402
from ftapp.models.tokens import ChatTokenCounter  # noqa: E402
from ftapp.settings import Settings, load_settings  # noqa: E402
from ftapp.store import jobs as store  # noqa: E402
from ftapp.store.db import connect, open_db  # noqa: E402
from ftapp.training.config import config_from_dict  # noqa: E402
from ftapp.training.jobs import queue_job  # noqa: E402
from ftapp.training.ray_head import LocalRayHead  # noqa: E402
from ftapp.training.worker import Worker  # noqa: E402
from tests.helpers import make_version  # noqa: E402


def run_job(settings: Settings, label: str, steps: int, ray_address: str) -> tuple[float, float]:
    """Queue one job and run it through the worker: (seconds to the first step, in total)."""
    config = config_from_dict(dict(
        dataset_version=label, max_steps=steps, batch_size=1, gradient_accumulation=1,
        max_length=128, lora_rank=8, lora_alpha=16, lora_dropout=0.0, eval_steps=0,
        save_steps=max(1, steps // 2), threads=1,
        runs_on="ray" if ray_address else "local", ray_address=ray_address,
    ))  # fmt: skip
    with closing(open_db(settings.db_path)) as db:
        job = queue_job(db, settings, config, "bench")
    first_step: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not first_step:
            with closing(connect(settings.db_path)) as db:
                if store.job_metrics(db, job.id):
                    first_step.append(time.perf_counter())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    watcher.start()
    Worker(settings).run_once()
    total = time.perf_counter() - started
    done.set()
    watcher.join()
    with closing(connect(settings.db_path)) as db:
        status = store.get_job(db, job.id).status.value
    if status != "succeeded":
        raise SystemExit(f"job #{job.id} {status}: see {job.log_path}")
    return first_step[0] - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    models_dir = load_settings().models_dir
    bundled = prepare_bundled_model(models_dir)
    home = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    (home / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
    head = LocalRayHead(num_cpus=2)
    settings = Settings(home=home)
    settings.ensure_dirs()
    with closing(open_db(settings.db_path)) as db:
        label = make_version(db, home, ChatTokenCounter(bundled), n=48)
    results: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    address = head.start()
    try:
        for _ in range(args.repeats):  # interleaved, so both see the same machine state
            results["local"].append(run_job(settings, label, args.steps, ""))
            results["ray"].append(run_job(settings, label, args.steps, address))
    finally:
        head.stop()

    def median(path: str, index: int) -> float:
        return statistics.median(times[index] for times in results[path])

    print(f"\n{args.steps} steps of the bundled model, {args.repeats} runs each (median):\n")
    print("| path | to the first step (s) | in total (s) |")
    print("|------|----------------------:|-------------:|")
    for path in ("local", "ray"):
        print(f"| {path} | {median(path, 0):.1f} | {median(path, 1):.1f} |")
    print(f"| ray / local | {median('ray', 0) / median('local', 0):.2f}x "
          f"| {median('ray', 1) / median('local', 1):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
