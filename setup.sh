#!/usr/bin/env bash
# Set up medaug, then run one job.
#   bash setup.sh quickstart   install, then run the demo augmentation study (medaug demo outputs/demo)
#   bash setup.sh test         install with the test extras, then run the test suite
# Environment: an active virtualenv / conda env is used as it is; otherwise ./.venv is created.
# torch: kept when already importable (for example a CUDA build); otherwise the CPU build
# torch==2.13.0 is installed, so that no unpinned requirement pulls the CUDA packages; from the index
# in MEDAUG_TORCH_INDEX_URL when set (for example https://download.pytorch.org/whl/cpu, CPU only).
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-quickstart}"; shift || true

if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  py=python
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  py=.venv/bin/python
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$py" -c "import torch" 2>/dev/null; then
  "$py" -m pip install --quiet ${MEDAUG_TORCH_INDEX_URL:+--index-url "$MEDAUG_TORCH_INDEX_URL"} "torch==2.13.0"
fi
case "$job" in
  test)       extras="[test]" ;;
  quickstart) extras="" ;;
  *) echo "usage: bash setup.sh [quickstart|test] [extra arguments]" >&2; exit 2 ;;
esac
"$py" -m pip install --quiet -e ".${extras}"

case "$job" in
  test)
    exec "$py" -m pytest "$@" ;;
  quickstart)
    exec "$py" -m medaug demo outputs/demo "$@" ;;
esac
