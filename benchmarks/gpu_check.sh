#!/usr/bin/env bash
# Everything the course needs checked on a CUDA GPU, in one go: well inside 8 minutes on one H200.
#
#   bash benchmarks/gpu_check.sh OUT            # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --prepare      # here, with internet: make what the GPU machine needs
#   GPU_CHECK_PROFILE=smoke bash benchmarks/gpu_check.sh OUT   # rehearse every step on a CPU, in seconds
#
# Settings (environment): PYTHON (default python3), GPU_CHECK_PROFILE (gpu), GPU_CHECK_LESSONS (08),
# GPU_CHECK_WHEELS (.gpu-wheels), GPU_CHECK_SITE (/tmp/aigc-site: where the wheels are installed),
# GPU_CHECK_PYTHON_VERSION (3.12: the GPU machine's, for --prepare), GPU_CHECK_STEPS (the names of
# the steps to run, e.g. "install environment time-lessons" to repeat one that failed; default: all
# but torchrun-gpt and time-lessons, which ran before and would take the script past 8 minutes;
# "all" runs every step).
#
# The GPU machine has its own python3 with a CUDA PyTorch, and no network and no Jupyter packages.
# `--prepare` (run where pip can reach PyPI) puts the data where the course finds it (data/, the
# cache) and, only when the steps include time-lessons (the one step that runs notebooks), downloads
# the notebook runner's packages as wheels into .gpu-wheels/ (less those the GPU machine's image
# already has); both folders are git-ignored and travel with the working tree (it checks that all
# of it stays under the 64 MiB that may travel: the data alone is 31 MB, the wheels 17 MB).
# On the GPU machine the script then
#   1. installs the wheels without network into GPU_CHECK_SITE (its python's own folders are left
#      alone) and puts that folder and the course on PYTHONPATH, which notebook kernels inherit;
#   2. reports the environment (`aigc-course doctor`);
#   3. runs the GPU tests (`pytest -m gpu`: AMP dtype, compile, SDPA flash, KV cache, checkpoints);
#   4. runs the benchmarks under the gpu profile, each with a time budget (--minutes); the GPT three
#      ways: as a learner gets it, with a budget of 2.8 minutes (the recipe ends at its 2,500
#      steps, where the data becomes the limit, long before: its validation loss, the lowest of
#      its evaluations, and its throughput, tokens/s and MFU, overall and steady), then in
#      PyTorch's default compile mode (the recipe's is CUDA graphs, reduce-overhead) and with
#      CUDA graphs and a batch four times larger (the learning rate doubled), for their rates;
#   5. trains the GPT for a minute under torchrun, one process per GPU (data parallel, DDP;
#      GPU_CHECK_NPROC overrides the count), for tokens/s beside the single process's;
#   6. times the model lessons under the gpu profile (`aigc-course time-notebooks`).
# Every figure and log goes into OUT; OUT/summary.txt lists each step with its status and seconds.
# A failed step is recorded and the script goes on, so one run gives every answer it can.
set -uo pipefail

PYTHON=${PYTHON:-python3}
PROFILE=${GPU_CHECK_PROFILE:-gpu}
WHEELS=${GPU_CHECK_WHEELS:-.gpu-wheels}
# What the GPU machine lacks (its image has torch, numpy, matplotlib, tqdm, safetensors, requests,
# pytest): the notebook runner's packages and the course's dependencies that only notebooks
# (ipywidgets) or downloads (pooch; the check runs offline) import.
MISSING_PACKAGES="pooch ipywidgets nbformat nbclient ipykernel"
# Dependencies of those that the GPU machine's image already has: not downloaded, not carried.
ALREADY_THERE="attrs certifi charset_normalizer idna packaging psutil pygments python_dateutil
requests six typing_extensions tzdata urllib3"
SITE=${GPU_CHECK_SITE:-/tmp/aigc-site}
DEFAULT_STEPS="install environment gpu-tests bench-gpt bench-gpt-default-mode bench-gpt-batch bench-vae
bench-gan bench-diffusion"
TRAVEL_LIMIT_MB=64

if [[ ! -f pyproject.toml || ! -d aigc_course ]]; then
    echo "error: run this from the repository root (no pyproject.toml and aigc_course/ here)" >&2
    exit 2
fi

wants() {  # wants STEP: whether GPU_CHECK_STEPS (or the default) includes STEP
    local wanted=${GPU_CHECK_STEPS:-$DEFAULT_STEPS}
    [[ $wanted == all || " ${wanted//$'\n'/ } " == *" $1 "* ]]
}

if [[ ${1:-} == --prepare ]]; then
    set -e
    if wants time-lessons; then
        mkdir -p "$WHEELS"
        # The GPU machine's Python is 3.12 on x86_64 Linux: fetch wheels for that, whatever runs here.
        "$PYTHON" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
            --python-version "${GPU_CHECK_PYTHON_VERSION:-3.12}" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux_2_28_x86_64 $MISSING_PACKAGES
        for name in $ALREADY_THERE; do rm -f "$WHEELS/$name"-[0-9]*.whl; done
        echo "wheels: $(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1) in $WHEELS/"
    else
        rm -rf "$WHEELS"
        echo "wheels: none (no notebook runs among the steps; the course's own imports are all there)"
    fi
    # The data: every required data set, verified, into the repository's data/ (the cache).
    AIGC_DATA_DIR="$PWD/data" aigc-course data fetch
    echo "data: $(du -sh data | cut -f1) in data/"
    # What travels: the tracked files, the untracked ones git does not ignore, and the two folders.
    travel_mb=$( { git ls-files -z --cached --others --exclude-standard; find "$WHEELS" data -type f -print0 2>/dev/null || true; } |
        du -cb --files0-from=- | tail -n 1 | awk '{printf "%.1f", $1 / 1048576}')
    echo "travels: $travel_mb MiB of at most $TRAVEL_LIMIT_MB"
    if awk "BEGIN {exit !($travel_mb >= $TRAVEL_LIMIT_MB)}"; then
        echo "error: the working tree with $WHEELS and data is over $TRAVEL_LIMIT_MB MiB; carry less" >&2
        exit 1
    fi
    echo "ready: carry data (and $WHEELS, if made) with the working tree, then run: bash benchmarks/gpu_check.sh OUT"
    exit 0
fi

OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT (or --prepare)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export AIGC_DATA_DIR="$PWD/data" AIGC_OFFLINE=1 AIGC_PROFILE="$PROFILE" MPLBACKEND=Agg
# The course from this folder and the carried packages, for this script and every kernel it starts.
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# step NAME LIMIT_SECONDS COMMAND...: run COMMAND (a program or one of the functions below) with
# a time limit, its output to OUT/NAME.log.
step() {
    local name=$1 limit=$2
    shift 2
    wants "$name" || return 0
    local start=$SECONDS
    echo "== $name (at most ${limit} s)"
    timeout --signal=INT --kill-after=15 "$limit" bash -c '"$@"' step "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    local verdict=ok
    [[ $status -ne 0 ]] && verdict="FAILED (exit $status)"
    [[ $status -eq 124 ]] && verdict="TIMED OUT after ${limit} s"
    printf '%-16s %-26s %4d s\n' "$name" "$verdict" $((SECONDS - start)) | tee -a "$SUMMARY"
    tail -n 3 "$OUT/$name.log"
    return 0
}

install_course() {
    if [[ -d $WHEELS ]]; then
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$SITE" "$WHEELS"/*.whl || return 1
    fi
    local modules=aigc_course
    [[ -d $WHEELS ]] && modules="$modules, nbclient, ipykernel, ipywidgets, pooch"
    "$PYTHON" -c "import $modules; print('course', aigc_course.__file__)"
}

report_versions() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$PYTHON" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    "$PYTHON" -m aigc_course.cli doctor
}

run_torchrun_gpt() {  # the GPT's minute again, data parallel: one process per GPU
    local gpus
    gpus=${GPU_CHECK_NPROC:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
    [[ $gpus -ge 1 ]] || gpus=1
    echo "processes: $gpus"
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$gpus" \
        -m aigc_course.cli train gpt --profile "$PROFILE" --minutes 1 --quiet --out "$SITE/ddp-gpt"
}

run_benchmark() {  # run_benchmark SCRIPT MINUTES [options]: the profile's recipe, by the clock
    local script=$1 minutes=$2
    shift 2
    "$PYTHON" "benchmarks/$script" --profile "$PROFILE" --minutes "$minutes" "$@"
}

# The default steps' limits add up to about 13 minutes (each step's figure is its longest); they are
# expected to take about 7 on an H200 (each GPT run's compilation 25-35 s); a step that needs
# longer is cut and says so. A budgeted benchmark's minutes include torch.compile's first
# compilation; its limit leaves room for the final evaluation and for the exit (tearing down CUDA
# and torch.compile took 5 s or more there).
export PYTHON PROFILE WHEELS SITE
export -f install_course report_versions run_benchmark run_torchrun_gpt
step install 45 install_course
step environment 30 report_versions
# Only the GPU tests: the project's pytest options name nbval, which the GPU machine lacks.
step gpu-tests 90 "$PYTHON" -m pytest -o addopts= -p no:cacheprovider -q -rs tests/test_gpu.py
step bench-gpt 200 run_benchmark gpt.py "${GPU_CHECK_GPT_MINUTES:-2.8}" --eval-every 250
step bench-gpt-default-mode 100 env AIGC_COMPILE_MODE=default bash -c 'run_benchmark gpt.py 0.75'
step bench-gpt-batch 100 env AIGC_COMPILE_MODE=reduce-overhead bash -c \
    'run_benchmark gpt.py 1 --batch-size 256 --lr 2e-3'
step bench-vae 80 run_benchmark vae.py 0.5
step bench-gan 70 run_benchmark gan.py 0.5
step bench-diffusion 100 run_benchmark diffusion.py 0.5 --train --samples 1000 --sampling-steps 10 50 250
step torchrun-gpt 110 run_torchrun_gpt
# The lessons to time (GPU_CHECK_LESSONS="06 07 08" for all the model lessons, given more time).
lessons=()
for number in ${GPU_CHECK_LESSONS:-08}; do lessons+=(notebooks/"$number"_*.ipynb); done
step time-lessons 150 "$PYTHON" -m aigc_course.cli time-notebooks --profile "$PROFILE" \
    --output "$OUT/time-table-$PROFILE.md" --readme none "${lessons[@]}"
echo
echo "summary ($SUMMARY):"
cat "$SUMMARY"
