#!/bin/bash
# HTCondor executable: run `python -m recoml.<verb> <overrides>` from the recoml checkout.
#   arguments = "<checkout> <verb> <override> ..."   (see train_gpu.sub, hpo_workers.sub)
set -euo pipefail
CHECKOUT="$1"; VERB="$2"; shift 2
cd "${CHECKOUT}"
if [[ -f .venv/bin/activate ]]; then source .venv/bin/activate; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${REQUEST_CPUS:-1}}"
exec python -m "recoml.${VERB}" "$@"
