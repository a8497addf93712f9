#!/bin/sh
# Import the shipped workflows into n8n, each once: a workflow n8n already has (imported before, edited
# since, credentials attached to it) is never overwritten. The n8n-import job of docker-compose.yml runs it
# on every `up`; it also runs natively (n8n and node on PATH): sh workflows/import.sh [DIR]
set -eu

dir="${1:-/workflows}"
existing="$(n8n list:workflow --onlyId)"
found=0
for file in "$dir"/*.json; do
  [ -e "$file" ] || continue
  found=1
  id="$(node -e 'process.stdout.write(require(process.argv[1]).id)' "$file")"
  if printf '%s\n' "$existing" | grep -qx "$id"; then
    echo "workflow $id: in n8n already, kept as it is"
    continue
  fi
  n8n import:workflow --input="$file"
  n8n publish:workflow --id="$id"
  echo "workflow $id: imported and published"
done
[ "$found" -eq 1 ] || echo "no workflows to import"
