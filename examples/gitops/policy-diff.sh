#!/usr/bin/env bash
# Check the policy bundle of this checkout, describe what it changes against a base revision
# (`tollgate diff`, Markdown), and optionally post that as a pull/merge request comment.
#
#   examples/gitops/policy-diff.sh [BASE_REV] [BUNDLE_DIR]     (default: origin/main policies)
#
# Environment:
#   TOLLGATE      the command to run (default: tollgate)
#   DIFF_OUT      where the Markdown goes (default: policy-diff.md; removed when nothing changed)
#   REPLAY_DAYS   also re-price the last N days of usage under the new bundle, from
#   PARQUET_DIR   ... the gateways' shared Parquet directory, or
#   TOLLGATE_DATA_DIR ... a gateway data directory (its ledger)
#   POST_URL      POST {"body": <markdown>} there when the bundle changes (GitHub:
#                 https://api.github.com/repos/OWNER/REPO/issues/NUMBER/comments; GitLab:
#                 .../projects/ID/merge_requests/IID/notes), with
#   POST_TOKEN    sent as `Authorization: Bearer ...`
#
# Exit status: 0 when the bundle is valid (changed or not), 1 when it fails check or the diff
# cannot be made.
set -euo pipefail

base="${1:-origin/main}"
bundle="${2:-policies}"
read -r -a tollgate <<< "${TOLLGATE:-tollgate}"
out="${DIFF_OUT:-policy-diff.md}"

# CI has no provider secrets: unset ${VAR}s are not an error here (the gateway checks them).
"${tollgate[@]}" check --allow-missing-env "$bundle"

args=(diff "$base:$bundle" "$bundle" --format markdown --allow-missing-env)
if [[ -n "${REPLAY_DAYS:-}" ]]; then
  args+=(--replay "$REPLAY_DAYS")
  if [[ -n "${PARQUET_DIR:-}" ]]; then args+=(--parquet "$PARQUET_DIR"); fi
fi

status=0
"${tollgate[@]}" "${args[@]}" > "$out" || status=$?
case "$status" in
  0) echo "no policy change against $base"; rm -f "$out"; exit 0 ;;
  2) echo "policy changes against $base: $(head -n 1 "$out")" ;;
  *) echo "tollgate diff failed (exit $status)" >&2; exit 1 ;;
esac

if [[ -n "${POST_URL:-}" ]]; then
  python3 -c 'import json, sys; print(json.dumps({"body": sys.stdin.read()}))' < "$out" \
    | curl -fsS -X POST -H "Authorization: Bearer ${POST_TOKEN:-}" -H "Content-Type: application/json" \
        --data-binary @- "$POST_URL" > /dev/null
  echo "posted the diff to $POST_URL"
fi
