#!/usr/bin/env bash
# Install everything innout needs on a fresh Debian machine (idempotent), then run a job:
#   bash setup.sh demo   -> the embedded default, end to end
#   bash setup.sh test   -> the whole test suite
#   bash setup.sh        -> install only
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

need_apt=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null; }
fi

stamp="$VENV/.innout-setup-$(sha256sum pyproject.toml setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] creating $VENV (first run takes a few minutes)"
  [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade "pip<26.2" 2>/dev/null || true
  "$VENV/bin/pip" install -q -e ".[test]"
  # insightface pins another OpenCV build over cv2; install it without dependencies (its real deps are above).
  "$VENV/bin/pip" install -q --no-deps "insightface==2.1"
  rm -f "$VENV"/.innout-setup-*
  touch "$stamp"
fi

export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90
case "${1:-}" in
  demo) shift; exec "$VENV/bin/innout" demo "$@" ;;
  test) shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  "") echo "[setup] done: $VENV" ;;
  *) echo "usage: bash setup.sh [demo|test] [args...]" >&2; exit 2 ;;
esac
