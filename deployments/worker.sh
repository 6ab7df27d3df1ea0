#!/usr/bin/env bash
# Create the `process` work pool (idempotent), register the deployments and start a worker.
# Needs PREFECT_API_URL pointing at a running server (`prefect server start`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false
prefect work-pool inspect process >/dev/null 2>&1 || prefect work-pool create process --type process
prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
exec prefect worker start --pool process "$@"
