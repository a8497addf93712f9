#!/bin/sh
# Import the shipped workflows into n8n, each once: a workflow n8n already has (imported before, edited
# since, credentials attached to it) is never overwritten. The n8n-import job of docker-compose.yml runs it
# on every `up`; it also runs natively (n8n and node on PATH): sh workflows/import.sh [DIR]
#
# First the credentials the workflows use, from this job's environment, written over on every run (.env is
# their source, so a rotated key reaches n8n): the gateway key as an HTTP header credential (GATEWAY_API_KEY),
# the same key as an OpenAI credential whose base URL is the gateway (GATEWAY_URL + /v1, for the AI Agent),
# and the token Alertmanager presents to the alert router (ALERTMANAGER_WEBHOOK_TOKEN). n8n stores them
# encrypted; n8n itself never sees them in its environment.
set -eu

dir="${1:-/workflows}"

creds="$(umask 077 && mktemp -d)"
trap 'rm -rf "$creds"' EXIT
node -e '
const e = process.env, out = [];
const base = (e.GATEWAY_URL || "http://api-gateway:8080").replace(/\/+$/, "");
if (e.GATEWAY_API_KEY) {
  out.push({ id: "hybridGatewayKey", name: "Hybrid AI gateway key", type: "httpHeaderAuth",
             data: { name: "X-API-Key", value: e.GATEWAY_API_KEY } });
  out.push({ id: "hybridOpenAiGate", name: "Hybrid AI gateway (OpenAI API)", type: "openAiApi",
             data: { apiKey: e.GATEWAY_API_KEY, url: base + "/v1" } });
}
if (e.ALERTMANAGER_WEBHOOK_TOKEN) {
  out.push({ id: "hybridAlertToken", name: "Alertmanager webhook token", type: "httpHeaderAuth",
             data: { name: "Authorization", value: "Bearer " + e.ALERTMANAGER_WEBHOOK_TOKEN } });
}
process.stdout.write(JSON.stringify(out));
' >"$creds/credentials.json"
if [ "$(cat "$creds/credentials.json")" = "[]" ]; then
  echo "no GATEWAY_API_KEY or ALERTMANAGER_WEBHOOK_TOKEN: no credentials made (the workflows cannot call the gateway)"
else
  n8n import:credentials --input="$creds/credentials.json"
  echo "credentials: written from the environment"
fi

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
