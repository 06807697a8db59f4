// The whole backend in one resource group: data storage, Functions host storage, Batch,
// the Function App (Flex Consumption, Python 3.11), monitoring, role assignments and the
// inbox's Event Grid delivery. Identity everywhere: no account key, connection string or
// Batch key is created, read or stored (docs/deploy.md says where the one system key is used).
//
//   az deployment group create -g <rg> -f infra/main.bicep -p prefix=<prefix>
//
// infra/deploy.sh runs this, publishes the app, then runs it again with inboxEventGrid=true.

targetScope = 'resourceGroup'

@description('Short name prefix: 2-10 lowercase letters and digits, starting with a letter. Resource names add a suffix unique to the resource group.')
@minLength(2)
@maxLength(10)
param prefix string

param location string = resourceGroup().location
param tags object = {}

@description('Create a user-assigned identity for Batch pools with blob access to the runs container only.')
param poolIdentity bool = true

@description('Subscribe the Function App to BlobCreated events in the inbox container (needs the app published with the Event Grid blob trigger; see docs/deploy.md).')
param inboxEventGrid bool = false

@description('Name of the Python function with the inbox blob trigger.')
param inboxFunctionName string = 'inbox_zip'

@description('Name of the Python function with the blob trigger on task logs (runs/<run_id>/logs/...): a run is checked when its tasks upload their logs.')
param logsFunctionName string = 'run_logs'

// Names of containers and queues: the defaults of shared/settings.py (tests/test_infra.py checks).
param runsContainer string = 'runs'
param inboxContainer string = 'inbox'
param profilesContainer string = 'profiles'
param runRequestsQueue string = 'run-requests'
param runEventsQueue string = 'run-events'
param runControlQueue string = 'run-control'
param runWorkQueue string = 'run-work'

@description('NCRONTAB schedule of the reconcile timer (six fields, seconds first).')
param reconcileSchedule string = '*/30 * * * * *'

@description('About how often each active run\'s task counts are looked at (seconds, staggered over the passes).')
param reconcileProgressSeconds int = 30

@description('The most progress looks one pass of the timer asks for; past that each run is looked at less often.')
param reconcileChecksPerTick int = 40

@description('Failed checks of a run after which it fails with the error as its reason.')
param runCheckAttempts int = 5

// The default pool used when a run spec names none (README, Settings).
param defaultPoolId string = 'dmsbatch-default'
param defaultVmSize string = 'standard_d2s_v3'
param defaultDedicatedNodes int = 1
param defaultImage string = 'canonical:ubuntu-24_04-lts:server'
param defaultNodeAgentSku string = 'batch.node.ubuntu 24.04'
param defaultMaxWallClockMinutes int = 1440

@description('The most members one sweep may have.')
param sweepMaxMembers int = 10000

@description('Replication of the data account.')
param dataSkuName string = 'Standard_GRS'

@description('Days a deleted blob or container in the data account can be restored.')
param softDeleteDays int = 7

@description('Days after its last change that a blob of a run is deleted by a storage lifecycle rule on the runs container (0: off, the default).')
@minValue(0)
param runsRetentionDays int = 0

@description('Hours after a run finished that the reconciler deletes its Batch job (0: never).')
@minValue(0)
param endedJobRetentionHours int = 24

@description('Prices per node-hour by VM size and priority, JSON (docs/contracts.md); empty: no cost is estimated.')
param priceTable string = ''

param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

@description('Always-ready instances for the Event Grid blob trigger group (0: scale to zero).')
param blobAlwaysReady int = 0

param logRetentionDays int = 30

@description('Object id of the person (or group) who submits runs from their machine: gets blob and queue data access on the data account. Empty: none.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

var suffix = take(uniqueString(resourceGroup().id, prefix), 6)
var names = {
  dataStorage: 'st${prefix}data${suffix}'
  hostStorage: 'st${prefix}func${suffix}'
  batchStorage: 'st${prefix}batch${suffix}'
  batchAccount: 'ba${prefix}${suffix}'
  batchIdentity: 'id-${prefix}-batch-${suffix}'
  poolIdentity: 'id-${prefix}-pool-${suffix}'
  functionApp: 'func-${prefix}-${suffix}'
  plan: 'plan-${prefix}-${suffix}'
  workspace: 'log-${prefix}-${suffix}'
  appInsights: 'appi-${prefix}-${suffix}'
  systemTopic: 'evgt-${prefix}-data-${suffix}'
}

module data 'modules/data-storage.bicep' = {
  name: 'data-storage'
  params: {
    name: names.dataStorage
    location: location
    tags: tags
    skuName: dataSkuName
    softDeleteDays: softDeleteDays
    runsContainer: runsContainer
    runsRetentionDays: runsRetentionDays
    containers: [
      runsContainer
      inboxContainer
      profilesContainer
    ]
    queues: [
      runRequestsQueue
      '${runRequestsQueue}-poison'
      '${runRequestsQueue}-poison-settled'
      runEventsQueue
      runControlQueue
      '${runControlQueue}-poison'
      runWorkQueue
      '${runWorkQueue}-poison'
    ]
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  params: {
    name: names.hostStorage
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module batch 'modules/batch.bicep' = {
  name: 'batch'
  params: {
    accountName: names.batchAccount
    autoStorageName: names.batchStorage
    accountIdentityName: names.batchIdentity
    poolIdentityName: names.poolIdentity
    createPoolIdentity: poolIdentity
    location: location
    tags: tags
  }
}

// What the code reads (shared/settings.py, the %NAME% expressions in functions/*.py and the
// DataStorage connection of the triggers). Identity-based: no DataStorage connection string,
// no BATCH_ACCOUNT_KEY.
var appSettings = [
  {
    name: 'DataStorage__blobServiceUri'
    value: data.outputs.blobEndpoint
  }
  {
    name: 'DataStorage__queueServiceUri'
    value: data.outputs.queueEndpoint
  }
  {
    name: 'DataStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'BATCH_ACCOUNT_URL'
    value: batch.outputs.endpoint
  }
  {
    name: 'RUN_REQUESTS_QUEUE'
    value: runRequestsQueue
  }
  {
    name: 'RUN_EVENTS_QUEUE'
    value: runEventsQueue
  }
  {
    name: 'RUN_CONTROL_QUEUE'
    value: runControlQueue
  }
  {
    name: 'RUN_WORK_QUEUE'
    value: runWorkQueue
  }
  {
    name: 'RUNS_CONTAINER'
    value: runsContainer
  }
  {
    name: 'INBOX_CONTAINER'
    value: inboxContainer
  }
  {
    name: 'PROFILES_CONTAINER'
    value: profilesContainer
  }
  {
    name: 'RECONCILE_SCHEDULE'
    value: reconcileSchedule
  }
  {
    name: 'RECONCILE_PROGRESS_SECONDS'
    value: string(reconcileProgressSeconds)
  }
  {
    name: 'RECONCILE_CHECKS_PER_TICK'
    value: string(reconcileChecksPerTick)
  }
  {
    name: 'RUN_CHECK_ATTEMPTS'
    value: string(runCheckAttempts)
  }
  {
    name: 'DEFAULT_POOL_ID'
    value: defaultPoolId
  }
  {
    name: 'DEFAULT_VM_SIZE'
    value: defaultVmSize
  }
  {
    name: 'DEFAULT_DEDICATED_NODES'
    value: string(defaultDedicatedNodes)
  }
  {
    name: 'DEFAULT_IMAGE'
    value: defaultImage
  }
  {
    name: 'DEFAULT_NODE_AGENT_SKU'
    value: defaultNodeAgentSku
  }
  {
    name: 'DEFAULT_MAX_WALL_CLOCK_MINUTES'
    value: string(defaultMaxWallClockMinutes)
  }
  {
    name: 'SWEEP_MAX_MEMBERS'
    value: string(sweepMaxMembers)
  }
  {
    name: 'ENDED_JOB_RETENTION_HOURS'
    value: string(endedJobRetentionHours)
  }
  {
    name: 'PRICE_TABLE'
    value: priceTable
  }
]

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    appSettings: appSettings
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    hostTableEndpoint: hostStorage.outputs.tableEndpoint
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    blobAlwaysReady: blobAlwaysReady
  }
}

module roles 'modules/app-roles.bicep' = {
  name: 'app-roles'
  params: {
    appPrincipalId: functionApp.outputs.principalId
    dataAccountName: data.outputs.name
    hostAccountName: hostStorage.outputs.name
    batchAccountName: batch.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    runsContainer: runsContainer
    poolPrincipalId: batch.outputs.poolIdentityPrincipalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// Second phase only (inboxEventGrid=true): the nested deployment, and with it the listKeys
// call for the blobs_extension key, does not exist before the app is published.
module inboxEvents 'modules/inbox-events.bicep' = if (inboxEventGrid) {
  name: 'inbox-events'
  params: {
    systemTopicName: names.systemTopic
    functionAppName: functionApp.outputs.name
    functionName: inboxFunctionName
    inboxContainer: inboxContainer
    logsFunctionName: logsFunctionName
    runsContainer: runsContainer
    dataAccountName: data.outputs.name
    location: location
    tags: tags
  }
  dependsOn: [
    roles
  ]
}

// What a user needs (no secrets): endpoints and names.
output functionAppName string = functionApp.outputs.name
output dataAccountName string = data.outputs.name
output dataBlobEndpoint string = data.outputs.blobEndpoint
output dataQueueEndpoint string = data.outputs.queueEndpoint
output batchAccountName string = batch.outputs.name
output batchAccountEndpoint string = batch.outputs.endpoint
output poolIdentityId string = batch.outputs.poolIdentityId
output poolIdentityClientId string = batch.outputs.poolIdentityClientId
output runsContainer string = runsContainer
output inboxContainer string = inboxContainer
output profilesContainer string = profilesContainer
output runRequestsQueue string = runRequestsQueue
output runEventsQueue string = runEventsQueue
output runControlQueue string = runControlQueue
output runWorkQueue string = runWorkQueue
output eventGridSystemTopic string = inboxEventGrid ? names.systemTopic : ''
