#!/usr/bin/env bash
# Event Grid delivery, step 3 of 3 (docs/deploy.md, "Event Grid delivery"): route the partner topic
# Microsoft Graph created to the app. It activates the topic, gives the topic a system-assigned
# identity with Storage Blob Data Contributor on the dead-letter container, and creates or updates the
# event subscription `eventgrid` to the app's Event Grid-triggered function `eventgrid`: CloudEvents
# 1.0 schema, Event Grid's retry policy, dead letters to that container. Idempotent: each step looks
# first and does only what is missing, and the event subscription is written whole (PUT), so a second
# run changes nothing.
#
#   scripts/activate-event-grid.sh [--topic NAME] [--wait SECONDS] [--max-delivery-attempts N]
#                                  [--event-ttl MINUTES] [--dry-run]
#
# --topic: a partner topic other than EVENT_GRID_PARTNER_TOPIC, for a GRAPH_SUBSCRIPTIONS entry that
# names its own (run once per such topic; Graph's authorization covers every topic in the group).
# Graph creates the topic when `renew` first creates a subscription delivered through Event Grid, which
# is after `azd up`: until then this says so and exits 0 (it is azd's postdeploy hook, and `azd up`
# must not fail for it). Run it again after that first renew; --wait polls for the topic that long.
# Inputs: the azd environment's values (a hook has them in its environment; otherwise
# `azd env get-values`), all outputs of infra/main.bicep. Needs `az login` as someone who may create
# role assignments on the resource group (Owner, or Contributor and User Access Administrator).
set -euo pipefail

# Microsoft.EventGrid's management API (the event subscription's body is this version's).
API_VERSION=2025-02-15
# Built-in role: Storage Blob Data Contributor (the role Event Grid's identity needs to dead-letter).
BLOB_DATA_CONTRIBUTOR=ba92f5b4-2d11-453d-a403-e96b0029c9fe
# The app's Event Grid-triggered function, and the event subscription named after it.
FUNCTION=eventgrid
EVENT_SUBSCRIPTION=eventgrid
POLL_SECONDS=15

usage() {
  echo "usage: $0 [--topic NAME] [--wait SECONDS] [--max-delivery-attempts N] [--event-ttl MINUTES] [--dry-run]" >&2
  exit 2
}

# integer NAME VALUE LOW HIGH: VALUE if it is a whole number in [LOW, HIGH], else a usage error.
integer() {
  if [[ ! "$2" =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then
    echo "$1 must be a whole number from $3 to $4: $2" >&2
    usage
  fi
  echo "$2"
}

topic=""
wait_seconds=0
# Event Grid's defaults and maxima: 30 attempts, 1,440 minutes (24 hours) to live.
max_attempts=30
ttl_minutes=1440
dry_run=false
while (($#)); do
  case "$1" in
    --topic) [[ $# -ge 2 && "$2" =~ ^[A-Za-z0-9-]{3,50}$ ]] || usage; topic="$2"; shift 2 ;;
    --wait) [[ $# -ge 2 ]] || usage; wait_seconds="$(integer --wait "$2" 0 86400)"; shift 2 ;;
    --max-delivery-attempts) [[ $# -ge 2 ]] || usage; max_attempts="$(integer "$1" "$2" 1 30)"; shift 2 ;;
    --event-ttl) [[ $# -ge 2 ]] || usage; ttl_minutes="$(integer "$1" "$2" 1 1440)"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

# Each input from the environment if it is set there (even empty: azd's hooks set them all), else from
# `azd env get-values` (read once, and only if needed).
inputs=(EVENT_GRID_PARTNER_TOPIC EVENT_GRID_AZURE_SUBSCRIPTION_ID EVENT_GRID_RESOURCE_GROUP
  EVENT_GRID_DEAD_LETTER_CONTAINER AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_STORAGE_ACCOUNT_NAME)
azd_values=""
azd_read=false
for name in "${inputs[@]}"; do
  [[ -z "${!name+set}" ]] || continue
  if ! $azd_read; then
    azd_read=true
    if command -v azd >/dev/null 2>&1; then azd_values="$(azd env get-values 2>/dev/null || true)"; fi
  fi
  printf -v "$name" '%s' "$(sed -n "s/^${name}=\"\(.*\)\"\$/\1/p" <<<"$azd_values" | head -n 1)"
done

if [[ -z "$EVENT_GRID_PARTNER_TOPIC" ]]; then
  echo "Event Grid delivery is off (EVENT_GRID_PARTNER_TOPIC is empty): nothing to do."
  echo "To turn it on: azd env set EVENT_GRID_DELIVERY true, then azd provision (docs/deploy.md)."
  exit 0
fi
topic="${topic:-$EVENT_GRID_PARTNER_TOPIC}"
for name in "${inputs[@]}"; do
  [[ -n "${!name}" ]] || { echo "$name is not set: run azd provision (it is an output of infra/main.bicep)" >&2; exit 2; }
done
command -v az >/dev/null 2>&1 || { echo "the Azure CLI (az) is not installed; install it, az login, run this again" >&2; exit 2; }

subscription="$EVENT_GRID_AZURE_SUBSCRIPTION_ID"
topic_group="$EVENT_GRID_RESOURCE_GROUP"
app_group="/subscriptions/$subscription/resourceGroups/$AZURE_RESOURCE_GROUP/providers"
topic_id="/subscriptions/$subscription/resourceGroups/$topic_group/providers/Microsoft.EventGrid/partnerTopics/$topic"
function_id="$app_group/Microsoft.Web/sites/$AZURE_FUNCTION_APP_NAME/functions/$FUNCTION"
storage_id="$app_group/Microsoft.Storage/storageAccounts/$AZURE_STORAGE_ACCOUNT_NAME"
container="$EVENT_GRID_DEAD_LETTER_CONTAINER"
container_id="$storage_id/blobServices/default/containers/$container"

# "<activation state>\t<identity's principal id>" of the topic, or nothing while Graph has not created it.
topic_state() {
  az eventgrid partner topic list --subscription "$subscription" --resource-group "$topic_group" \
    --query "[?name=='$topic'] | [0].[activationState, identity.principalId]" --output tsv
}

# 1. Find the topic, polling up to --wait seconds.
deadline=$((SECONDS + wait_seconds))
found="$(topic_state)"
while [[ -z "$found" ]] && ((SECONDS < deadline)); do
  pause=$((deadline - SECONDS < POLL_SECONDS ? deadline - SECONDS : POLL_SECONDS))
  echo "partner topic $topic: not created yet, looking again in ${pause}s"
  sleep "$pause"
  found="$(topic_state)"
done
if [[ -z "$found" ]]; then
  cat <<EOF
partner topic $topic: Microsoft Graph has not created it yet in resource group $topic_group.
Graph creates it when \`renew\` first creates a subscription delivered through Event Grid (a
GRAPH_SUBSCRIPTIONS entry with "delivery": "eventGrid"); the renew timer runs within five minutes
of a deploy. Then run this again, for example:
  scripts/activate-event-grid.sh --wait 600
Nothing was changed.
EOF
  exit 0
fi
IFS=$'\t' read -r state principal <<<"$found"

# 2. Activate it: until then Event Grid delivers nothing from it.
if [[ "$state" == Activated ]]; then
  echo "partner topic $topic: already activated"
elif $dry_run; then
  echo "partner topic $topic: would activate (now ${state:-unknown})"
else
  az eventgrid partner topic activate --subscription "$subscription" --resource-group "$topic_group" \
    --name "$topic" --output none
  echo "partner topic $topic: activated"
fi

# 3. The topic's own identity writes the dead letters: the storage account takes no shared keys.
if [[ -n "$principal" ]]; then
  echo "partner topic $topic: has a system-assigned identity"
elif $dry_run; then
  echo "partner topic $topic: would get a system-assigned identity"
else
  az rest --method patch --url "$topic_id?api-version=$API_VERSION" \
    --body '{"identity": {"type": "SystemAssigned"}}' --output none
  principal="$(az eventgrid partner topic show --subscription "$subscription" --resource-group "$topic_group" \
    --name "$topic" --query identity.principalId --output tsv)"
  [[ -n "$principal" ]] || { echo "partner topic $topic: still no identity after the update; run this again" >&2; exit 1; }
  echo "partner topic $topic: system-assigned identity $principal"
fi

if [[ -z "$principal" ]]; then
  echo "container $container: would grant the topic's identity Storage Blob Data Contributor"
else
  granted="$(az role assignment list --scope "$container_id" --role "$BLOB_DATA_CONTRIBUTOR" \
    --query "length([?principalId=='$principal'])" --output tsv)"
  if [[ "$granted" != 0 ]]; then
    echo "container $container: the topic's identity already has Storage Blob Data Contributor"
  elif $dry_run; then
    echo "container $container: would grant the topic's identity Storage Blob Data Contributor"
  else
    az role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
      --role "$BLOB_DATA_CONTRIBUTOR" --scope "$container_id" --output none
    echo "container $container: granted the topic's identity Storage Blob Data Contributor"
  fi
fi

# 4. The event subscription. `az eventgrid partner topic event-subscription create` has no option for a
# dead-letter identity, so the resource is written with its documented body (Microsoft.EventGrid
# partnerTopics/eventSubscriptions): PUT creates it or replaces it with the same definition.
body="$(cat <<EOF
{
  "properties": {
    "destination": {"endpointType": "AzureFunction", "properties": {"resourceId": "$function_id"}},
    "eventDeliverySchema": "CloudEventSchemaV1_0",
    "retryPolicy": {"maxDeliveryAttempts": $max_attempts, "eventTimeToLiveInMinutes": $ttl_minutes},
    "deadLetterWithResourceIdentity": {
      "identity": {"type": "SystemAssigned"},
      "deadLetterDestination": {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "$storage_id", "blobContainerName": "$container"}
      }
    }
  }
}
EOF
)"
if $dry_run; then
  echo "event subscription $EVENT_SUBSCRIPTION: would write (function $FUNCTION, CloudEvents 1.0," \
    "$max_attempts attempts, $ttl_minutes minutes, dead letters to $container)"
  exit 0
fi
az rest --method put --url "$topic_id/eventSubscriptions/$EVENT_SUBSCRIPTION?api-version=$API_VERSION" \
  --body "$body" --output none

# The write completes in the background: wait for its outcome, a minute or two at most.
for _ in $(seq 1 24); do
  provisioning="$(az eventgrid partner topic event-subscription show --subscription "$subscription" \
    --resource-group "$topic_group" --partner-topic-name "$topic" --name "$EVENT_SUBSCRIPTION" \
    --query provisioningState --output tsv)"
  case "$provisioning" in
    Succeeded)
      echo "event subscription $EVENT_SUBSCRIPTION: $topic -> function $FUNCTION (CloudEvents 1.0," \
        "$max_attempts attempts, $ttl_minutes minutes, dead letters to $container)"
      exit 0 ;;
    Failed | Canceled)
      echo "event subscription $EVENT_SUBSCRIPTION: $provisioning. The function $FUNCTION must be deployed" \
        "(azd deploy), and a role assignment just made can take a few minutes to apply: run this again." >&2
      exit 1 ;;
  esac
  sleep 5
done
echo "event subscription $EVENT_SUBSCRIPTION: still ${provisioning:-unknown}; check it with" \
  "az eventgrid partner topic event-subscription show -g $topic_group --partner-topic-name $topic -n $EVENT_SUBSCRIPTION"
