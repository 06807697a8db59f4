#!/usr/bin/env bash
# Deploy the backend to Azure: templates, app, inbox Event Grid subscription, profiles.
# Identity only: this script never reads, prints or stores a key. See docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: infra/deploy.sh -g RESOURCE_GROUP -p PREFIX [-l LOCATION] [options]

Deploys infra/main.bicep into RESOURCE_GROUP (created when missing; then -l is needed),
publishes the Functions app (remote build on Flex Consumption), subscribes the inbox blob
trigger to Event Grid, uploads profiles/ (when the folder exists) and prints the values a
user needs. Safe to run again: every step is idempotent.

  -g, --resource-group NAME  resource group
  -p, --prefix PREFIX        2-10 lowercase letters and digits, starting with a letter
  -l, --location REGION      region (default: the resource group's); must offer Flex
                             Consumption: az functionapp list-flexconsumption-locations
      --no-pool-identity     do not create the pools' user-assigned identity
      --no-operator-access   do not give the signed-in user blob and queue access to the
                             data account (needed to upload profiles and submit runs)
      --skip-publish         deploy the templates only; the Event Grid subscription is
                             still made if an earlier publish left the app ready for it
      --use-func             publish with Azure Functions Core Tools
                             (func azure functionapp publish) instead of az config-zip
      --what-if              show what the templates would change, and stop
  -h, --help                 this help

Needs: az (logged in: az login), python3 (3.11+); func only with --use-func.
EOF
}

die() { echo "deploy.sh: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA="$REPO_ROOT/infra"

RG="" PREFIX="" LOCATION=""
POOL_IDENTITY=true OPERATOR_ACCESS=true PUBLISH=true USE_FUNC=false WHAT_IF=false
while [ $# -gt 0 ]; do
  case "$1" in
    -g|--resource-group) RG=${2:?"$1 needs a value"}; shift 2 ;;
    -p|--prefix) PREFIX=${2:?"$1 needs a value"}; shift 2 ;;
    -l|--location) LOCATION=${2:?"$1 needs a value"}; shift 2 ;;
    --no-pool-identity) POOL_IDENTITY=false; shift ;;
    --no-operator-access) OPERATOR_ACCESS=false; shift ;;
    --skip-publish) PUBLISH=false; shift ;;
    --use-func) USE_FUNC=true; shift ;;
    --what-if) WHAT_IF=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

if [ -z "$RG" ] || [ -z "$PREFIX" ]; then usage >&2; exit 2; fi
[[ $PREFIX =~ ^[a-z][a-z0-9]{1,9}$ ]] || die "prefix '$PREFIX': use 2-10 lowercase letters and digits, starting with a letter"

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed"
if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PY="$REPO_ROOT/.venv/bin/python"; else PY=python3; fi
command -v "$PY" >/dev/null 2>&1 || die "python3 is not installed"
if $USE_FUNC; then command -v func >/dev/null 2>&1 || die "--use-func: Azure Functions Core Tools (func) are not installed"; fi
az account show --query id -o tsv >/dev/null 2>&1 || die "not logged in: run az login (and az account set -s <subscription>)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Read one output of the last deployment (names and endpoints only; nothing secret).
output() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["value"])' "$WORK/outputs.json" "$1"; }

# Retry a command while role assignments propagate (they can take a few minutes).
retry() {
  local attempts=$1 pause=$2 n=1
  shift 2
  until "$@"; do
    [ "$n" -ge "$attempts" ] && return 1
    note "retrying in ${pause}s (attempt $((n + 1)) of $attempts): often role assignments still propagating"
    sleep "$pause"
    n=$((n + 1))
  done
}

if ! az group show -n "$RG" -o none >/dev/null 2>&1; then
  [ -n "$LOCATION" ] || die "resource group $RG does not exist: give -l LOCATION to create it"
  note "creating resource group $RG in $LOCATION"
  az group create -n "$RG" -l "$LOCATION" -o none
fi
LOCATION=${LOCATION:-$(az group show -n "$RG" --query location -o tsv)}

# Registration is idempotent and quick when already done (a new subscription needs it once).
for ns in Microsoft.Storage Microsoft.Batch Microsoft.Web Microsoft.EventGrid Microsoft.Insights \
          Microsoft.OperationalInsights Microsoft.ManagedIdentity; do
  az provider register --namespace "$ns" -o none
done

OPERATOR_ID=""
if $OPERATOR_ACCESS; then
  OPERATOR_ID=$(az ad signed-in-user show --query id -o tsv 2>/dev/null || true)
  [ -n "$OPERATOR_ID" ] || note "signed in as a service principal: no operator access granted (use --no-operator-access to silence)"
fi

PARAMS=(prefix="$PREFIX" location="$LOCATION" poolIdentity="$POOL_IDENTITY")
[ -z "$OPERATOR_ID" ] || PARAMS+=(operatorPrincipalId="$OPERATOR_ID")
DEPLOYMENT="dmsbatch-$PREFIX"

deploy() {  # $1: inboxEventGrid
  az deployment group create -g "$RG" -n "$DEPLOYMENT" -f "$INFRA/main.bicep" \
    -p "${PARAMS[@]}" inboxEventGrid="$1" --query properties.outputs -o json > "$WORK/outputs.json"
}

if $WHAT_IF; then
  az deployment group what-if -g "$RG" -n "$DEPLOYMENT" -f "$INFRA/main.bicep" -p "${PARAMS[@]}" inboxEventGrid=false
  exit 0
fi

note "deploying infra/main.bicep to $RG ($LOCATION)"
deploy false
APP=$(output functionAppName)

if $PUBLISH; then
  note "packaging the app (blob triggers switched to the Event Grid source)"
  "$PY" "$INFRA/package_app.py" "$WORK/package" --blob-source EventGrid >&2
  note "publishing to $APP (remote build)"
  if $USE_FUNC; then
    publish() { (cd "$WORK/package/app" && func azure functionapp publish "$APP" --python); }
  else
    publish() { az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$WORK/package/app.zip" --build-remote true -o none; }
  fi
  retry 5 60 publish || die "publishing failed; see the Deployment Center log of $APP"
fi

# The Event Grid subscription needs the blob extension's system key, which exists once the
# host has loaded the Event Grid blob trigger. Only whether the key exists is queried here.
has_blob_key() {
  [ "$(az functionapp keys list -g "$RG" -n "$APP" --query 'systemKeys.blobs_extension != null' -o tsv 2>/dev/null || echo false)" = true ]
}
if $PUBLISH; then
  note "waiting for the host to load the blob trigger"
  retry 40 15 has_blob_key || true
fi
if has_blob_key; then
  note "subscribing the inbox blob trigger to Event Grid"
  deploy true
else
  note "the blobs_extension key does not exist yet: run this script again (--skip-publish) to subscribe the inbox trigger"
fi

DATA_ACCOUNT=$(output dataAccountName)
PROFILES=$(output profilesContainer)
if [ -d "$REPO_ROOT/profiles" ]; then
  note "uploading profiles/ to $PROFILES"
  retry 10 30 az storage blob upload-batch --auth-mode login --account-name "$DATA_ACCOUNT" \
    -d "$PROFILES" -s "$REPO_ROOT/profiles" --overwrite true -o none \
    || die "uploading profiles failed: the signed-in identity needs Storage Blob Data Contributor on $DATA_ACCOUNT"
fi

cat <<EOF

Deployed. Nothing below is a secret.

  Function App            $APP
  data account            $DATA_ACCOUNT
    blob endpoint         $(output dataBlobEndpoint)
    queue endpoint        $(output dataQueueEndpoint)
    containers            $(output runsContainer), $(output inboxContainer), $PROFILES
    queues                $(output runRequestsQueue) (poison: $(output runRequestsQueue)-poison), $(output runEventsQueue), $(output runControlQueue) (poison: $(output runControlQueue)-poison)
  Batch account           $(output batchAccountName)
    endpoint              $(output batchAccountEndpoint)
  pool identity           $(output poolIdentityId)
  Event Grid system topic $(output eventGridSystemTopic)

Submit runs from this machine (after az login; DefaultAzureCredential picks the login up):

  export DataStorage__blobServiceUri=$(output dataBlobEndpoint)
  export DataStorage__queueServiceUri=$(output dataQueueEndpoint)
  export BATCH_ACCOUNT_URL=$(output batchAccountEndpoint)
EOF
