#!/usr/bin/env bash
# Offline validation of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s.
# Builds no image, pulls nothing, needs no Docker engine or cluster. The checks live in
# deploy/validate_deploy.py; deploy/README.md says what they cover.
#
#   scripts/validate-deploy.sh                 validate; exit 1 on any failure
#   scripts/validate-deploy.sh --require-all   also fail when a validator is not installed
#   scripts/validate-deploy.sh --sync          regenerate deploy/k8s/kafka-topics-configmap.yaml
#                                              from deploy/kafka/create-topics.sh, then validate
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.tools/venv/bin/python"

if [ ! -x "$python" ]; then
  echo "validate-deploy: no Python venv at .tools/venv; run scripts/setup.sh first" >&2
  exit 2
fi
if ! "$python" -c "import jsonschema, yaml" 2>/dev/null; then
  echo "validate-deploy: the venv lacks jsonschema or PyYAML; run scripts/setup.sh" >&2
  exit 2
fi

exec "$python" "$root/deploy/validate_deploy.py" "$@"
