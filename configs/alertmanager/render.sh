#!/bin/sh
# Alertmanager's configuration from the environment (.env), then Alertmanager itself: its config file cannot
# read variables. Alerts go to ALERTMANAGER_WEBHOOK_URL (Alertmanager's webhook JSON; docker-compose.yml points
# it at n8n's alert router, which forwards to ALERT_WEBHOOK_URL), with ALERTMANAGER_WEBHOOK_TOKEN as a bearer
# token when set, and to ALERT_EMAIL_TO through ALERT_SMTP_SMARTHOST; each only once set. With neither, alerts
# are kept and shown in Alertmanager (127.0.0.1:9093) and sent nowhere.
#
#   sh configs/alertmanager/render.sh [OUT]        (OUT given: write the file and stop; the tests do)
set -eu

out="${1:-/tmp/alertmanager.yml}"
for value in "${ALERTMANAGER_WEBHOOK_URL:-}" "${ALERTMANAGER_WEBHOOK_TOKEN:-}" "${ALERT_EMAIL_TO:-}" "${ALERT_EMAIL_FROM:-}" \
             "${ALERT_SMTP_SMARTHOST:-}" "${ALERT_SMTP_USER:-}" "${ALERT_SMTP_PASSWORD:-}"; do
  case "$value" in *'"'* | *\\*) echo "alert settings must not contain quotes or backslashes" >&2; exit 1 ;; esac
done
{
  cat <<'YAML'
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: default
YAML
  if [ -n "${ALERTMANAGER_WEBHOOK_URL:-}" ]; then
    printf '    webhook_configs:\n      - url: "%s"\n        send_resolved: true\n' "$ALERTMANAGER_WEBHOOK_URL"
    if [ -n "${ALERTMANAGER_WEBHOOK_TOKEN:-}" ]; then
      printf '        http_config:\n          authorization:\n            credentials: "%s"\n' "$ALERTMANAGER_WEBHOOK_TOKEN"
    fi
  fi
  if [ -n "${ALERT_EMAIL_TO:-}" ] && [ -n "${ALERT_SMTP_SMARTHOST:-}" ]; then
    printf '    email_configs:\n      - to: "%s"\n        from: "%s"\n        smarthost: "%s"\n' \
      "$ALERT_EMAIL_TO" "${ALERT_EMAIL_FROM:-$ALERT_EMAIL_TO}" "$ALERT_SMTP_SMARTHOST"
    printf '        send_resolved: true\n'
    if [ -n "${ALERT_SMTP_USER:-}" ]; then
      printf '        auth_username: "%s"\n        auth_password: "%s"\n' "$ALERT_SMTP_USER" "${ALERT_SMTP_PASSWORD:-}"
    fi
  fi
} >"$out"
[ $# -ge 1 ] && exit 0
exec /bin/alertmanager --config.file="$out" --storage.path=/alertmanager --web.listen-address=:9093
