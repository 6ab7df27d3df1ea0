#!/usr/bin/env bash
# bench/gpu_suite.py on a lent GPU machine in one command, or (here) the wheels that command needs.
#
# The device machine is bare: its python3 (3.12) has torch with CUDA, numpy, pandas, pyarrow, typer, rich, ... but
# not innout's pydantic / lpips / Prefect / Dask stack, and nothing can be downloaded there. So, on THIS machine:
#
#   bash bench/gpu_suite.sh wheels        # downloads cp312 manylinux wheels of what the device lacks into .wheels-gpu/
#                                         # (ignored by git via .git/info/exclude; 35 MiB of the 64 MiB the tool carries)
#
# then through the device tool's `run`, with carry [".wheels-gpu"] and timeout_s 600:
#
#   bash bench/gpu_suite.sh               # installs the wheels into /tmp/site, runs the suite on cuda with --profile;
#                                         # JSON, profile table and log land in $OUT (or bench/results/ without $OUT)
#
# Extra arguments go to bench/gpu_suite.py (e.g. `bash bench/gpu_suite.sh --parts synthesis steps`). The suite's
# own budgets keep it under 8 minutes; `timeout` stops it 575 s after this script started, so the command returns
# inside the tool's 600 s with whatever was measured (the JSON is rewritten after every measurement).
set -uo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
WHEEL_DIR=.wheels-gpu

# What the device image lacks (innout's closure from .venv, minus KINDS.md's package list), at the versions
# pinned / resolved in .venv. Pure-Python wheels resolve to py3-none-any; the others to cp312 manylinux builds.
# Left out to fit the tool's 64 MiB (working tree + carried): bokeh + xyzservices (only Dask's dashboard, which
# distributed skips without bokeh) and apprise (Prefect imports it only for notification blocks).
WHEELS=(
  aiosqlite==0.22.1 alembic==1.20.1 amplitude-analytics==1.3.0 annotated-types==0.8.0 
  asgi-lifespan==2.1.0 asyncpg==0.32.0 beartype==0.23.1 burner-redis==0.1.7 cachetools==7.3.3
  cffi==2.1.1 coolname==5.0.0 cronsim==2.8 cryptography==50.0.2 cyclopts==5.5.2 dask==2026.7.1 dask-cuda==26.10.0
  dateparser==1.5.0 distributed==2026.7.1 docker==7.2.0 docstring-parser==0.18.0 exceptiongroup==1.3.2
  fastapi==0.150.0 ffmpeg-python==0.2.0 future==1.0.0 graphviz==0.21 griffe==2.4.1 griffecli==2.4.1
  griffelib==2.4.1 jinja2-humanize-extension==0.4.0 jsonpatch==1.48 jsonpointer==3.12 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 locket==1.0.0 lpips==0.1.4 mako==1.4.3 oauthlib==4.0.1
  opentelemetry-api==1.45.2 orjson==3.13.0 partd==1.4.2 pendulum==3.3.0 prefect==3.8.8 prefect-dask==0.3.7
  py-key-value-aio==0.5.0 pycparser==3.12 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-extra-types==2.11.1
  pydantic-settings==2.16.3 pydocket==0.27.0 python-dotenv==1.2.4 python-json-logger==4.2.0
  python-slugify==9.0.0 pytz==2026.6 rapids-dask-dependency==26.10.0 readchar==4.2.2 redis==8.1.0
  referencing==0.37.0 requests-oauthlib==2.0.0 rfc3339-validator==0.1.4 rich-rst==2.2.0 rpds-py==2026.9.1
  ruamel-yaml==0.19.1 ruamel-yaml-clib==0.2.15 semver==3.1.2 sniffio==1.3.1 sqlalchemy==2.1.9 starlette==1.10.0
  tblib==3.2.2 text-unidecode==1.3 toml==0.10.2 tornado==6.6.1 typing-inspection==0.4.5 tzdata==2026.6
  tzlocal==5.4.5 uncalled-for==0.6.2 uvicorn==0.54.0 websockets==16.1.1 zict==3.0.0
)

if [ "${1:-}" = wheels ]; then
  PY=${PYTHON:-.venv/bin/python}
  grep -qxF "/$WHEEL_DIR/" .git/info/exclude 2>/dev/null || echo "/$WHEEL_DIR/" >>.git/info/exclude
  mkdir -p "$WHEEL_DIR"
  plat=()
  for n in 28 27 24 17; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEEL_DIR" "${WHEELS[@]}" || exit 1
  rm -f "$WHEEL_DIR"/bokeh-* "$WHEEL_DIR"/xyzservices-* "$WHEEL_DIR"/apprise-*  # from an older list
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  wheels=$(du -sb "$WHEEL_DIR" | cut -f1)
  echo "wheels $((wheels / 1048576)) MiB + working tree $((tree / 1048576)) MiB (the device tool carries 64 MiB)"
  [ $((wheels + tree)) -lt $((64 * 1048576)) ] || { echo "gpu_suite.sh: over the 64 MiB the tool carries" >&2; exit 1; }
  exit 0
fi

OUT_DIR=${OUT:-bench/results}
mkdir -p "$OUT_DIR"
PY=python3
[ -x .venv/bin/python ] && [ -z "${OUT:-}" ] && PY=.venv/bin/python  # a machine with the venv: use it
if compgen -G "$WHEEL_DIR/*.whl" >/dev/null && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  t0=$(date +%s)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEEL_DIR"/*.whl || { echo "gpu_suite.sh: installing $WHEEL_DIR failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/site/bin:$PATH"
  echo "gpu_suite.sh: installed $(ls "$WHEEL_DIR"/*.whl | wc -l) wheels in $(($(date +%s) - t0)) s"
else  # the wheels are cp312 builds for the device's python3; a venv (3.11) has everything already
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  [ "$PY" = python3 ] && echo "gpu_suite.sh: no $WHEEL_DIR/ for this python3 (run 'bash bench/gpu_suite.sh wheels'" \
    "here and carry it); parts that need pydantic / Prefect / Dask will record their import error"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
command -v ffprobe >/dev/null || echo "gpu_suite.sh: no ffprobe on this machine: the demo part will be skipped"
export PYTHONUNBUFFERED=1 PREFECT_SERVER_ANALYTICS_ENABLED=false TMPDIR=${TMPDIR:-/tmp}
left=$((575 - ($(date +%s) - START)))  # the device tool stops a command at 600 s
timeout -k 10 "$left" "$PY" bench/gpu_suite.py --device cuda --profile --total-budget $((left - 45)) \
  --out "$OUT_DIR/gpu_suite.json" "$@" 2>&1 |
  tee "$OUT_DIR/gpu_suite.log" | grep -v '^W[0-9]\{4\} '
rc=${PIPESTATUS[0]}
echo "gpu_suite.sh: exit $rc; results in $OUT_DIR/gpu_suite.json"
exit "$rc"
