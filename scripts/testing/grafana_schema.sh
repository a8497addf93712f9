#!/usr/bin/env bash
# Generate Grafana's dashboard JSON schema from Grafana's own TypeScript types (no Grafana server needed):
#   npm pack @grafana/schema, then ts-json-schema-generator on its Dashboard type.
# Usage: ./scripts/testing/grafana_schema.sh [OUT]     (default .cache/grafana/dashboard.schema.json)
set -euo pipefail

GRAFANA_SCHEMA_VERSION=13.2.3
GENERATOR_VERSION=2.4.0
WORK=""

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local out="${1:-.cache/grafana/dashboard.schema.json}"
  need_cmd npm "Node.js 18+"
  WORK="$(mktemp -d)"
  trap 'rm -rf "${WORK:-}"' EXIT
  info "generating the Grafana dashboard schema (@grafana/schema@$GRAFANA_SCHEMA_VERSION)"
  (
    cd "$WORK"
    npm pack --silent "@grafana/schema@$GRAFANA_SCHEMA_VERSION" >/dev/null
    tar xzf grafana-schema-*.tgz
    npm install --silent --no-save --no-audit --no-fund "ts-json-schema-generator@$GENERATOR_VERSION" >/dev/null
    npx --no-install ts-json-schema-generator --no-type-check \
      --path package/dist/types/raw/dashboard/x/types.gen.d.ts --type Dashboard > dashboard.schema.json
  )
  mkdir -p "$(dirname "$out")"
  mv "$WORK/dashboard.schema.json" "$out"
  info "wrote $out"
}

main "$@"
