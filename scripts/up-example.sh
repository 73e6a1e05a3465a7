#!/usr/bin/env bash
# Quick start: install what supercloud needs, then bring up examples/local.yaml on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/supercloud -f examples/local.yaml up
