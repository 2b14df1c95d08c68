#!/usr/bin/env bash
# Grant the app's managed identity the Microsoft Graph application roles (app-role
# assignments) that the chosen resource kinds need. Idempotent: roles already assigned are
# left alone. Needs `az login` as a Privileged Role Administrator (or Global Administrator),
# since an app-role assignment is an admin consent.
#
#   scripts/grant-graph-permissions.sh [--identity OBJECT_ID] [--dry-run] KIND...
#
# KIND is one of the names below; the identity defaults to the one `azd up` created
# (azd env get-value AZURE_MANAGED_IDENTITY_PRINCIPAL_ID).
set -euo pipefail

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
SHAREPOINT_APP_ID=00000003-0000-0ff1-ce00-000000000000
GRAPH_API=https://graph.microsoft.com/v1.0

# kind -> "resource-app permission": the least-privileged application permission per kind,
# as shared/sources/catalog.py lists them.
declare -A ROLES=(
  [drives]="graph Files.Read.All"
  [lists]="graph Sites.ReadWrite.All"
  [sharepoint-webhooks]="sharepoint Sites.Read.All"
  [users]="graph User.Read.All"
  [groups]="graph Group.Read.All"
  [mail]="graph Mail.Read"
  [calendars]="graph Calendars.Read"
  [contacts]="graph Contacts.Read"
  [teams-channels]="graph ChannelMessage.Read.All"
  [teams-chats]="graph Chat.Read.All"
)

usage() {
  echo "usage: $0 [--identity OBJECT_ID] [--dry-run] KIND..." >&2
  echo "kinds: $(printf '%s\n' "${!ROLES[@]}" | sort | tr '\n' ' ')" >&2
  exit 2
}

identity=""
dry_run=false
kinds=()
while (($#)); do
  case "$1" in
    --identity) [[ $# -ge 2 ]] || usage; identity="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *)
      [[ -n "${ROLES[$1]+set}" ]] || { echo "unknown kind: $1" >&2; usage; }
      kinds+=("$1"); shift ;;
  esac
done
((${#kinds[@]})) || usage

if [[ -z "$identity" ]]; then
  identity="$(azd env get-value AZURE_MANAGED_IDENTITY_PRINCIPAL_ID)"
fi
[[ "$identity" =~ ^[0-9a-fA-F-]{36}$ ]] || { echo "not an object id: $identity" >&2; exit 2; }

# The service principal of a Microsoft API in this tenant: "<object id>".
service_principal() {
  az ad sp show --id "$1" --query id --output tsv
}

# The id of the application role named $2 on the service principal $1.
app_role_id() {
  az ad sp show --id "$1" --query "appRoles[?value=='$2' && contains(allowedMemberTypes, 'Application')].id | [0]" \
    --output tsv
}

assigned="$(az rest --method GET --uri "$GRAPH_API/servicePrincipals/$identity/appRoleAssignments" \
  --query "value[].[resourceId, appRoleId]" --output tsv)"

declare -A resources=()
status=0
for kind in "${kinds[@]}"; do
  read -r api permission <<<"${ROLES[$kind]}"
  if [[ "$api" == graph ]]; then app_id=$GRAPH_APP_ID; else app_id=$SHAREPOINT_APP_ID; fi
  if [[ -z "${resources[$api]+set}" ]]; then
    resources[$api]="$(service_principal "$app_id")"
  fi
  resource="${resources[$api]}"
  role="$(app_role_id "$app_id" "$permission")"
  if [[ -z "$role" ]]; then
    echo "$kind: no application role $permission on $api" >&2
    status=1
    continue
  fi
  if grep -qi "^${resource}[[:space:]]${role}$" <<<"$assigned"; then
    echo "$kind: $permission ($api) already assigned"
    continue
  fi
  if $dry_run; then
    echo "$kind: would assign $permission ($api)"
    continue
  fi
  body="{\"principalId\": \"$identity\", \"resourceId\": \"$resource\", \"appRoleId\": \"$role\"}"
  az rest --method POST --uri "$GRAPH_API/servicePrincipals/$identity/appRoleAssignments" \
    --headers "Content-Type=application/json" --body "$body" --output none
  assigned+=$'\n'"$resource"$'\t'"$role"
  echo "$kind: assigned $permission ($api)"
done
exit "$status"
