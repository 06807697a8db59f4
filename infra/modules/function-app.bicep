// The Functions app on the Flex Consumption plan (Linux, Python 3.11) with a system-assigned
// identity. Every connection is identity-based: host storage (AzureWebJobsStorage__*),
// the data account (DataStorage__*, set by main.bicep), Batch (BATCH_ACCOUNT_URL, no key)
// and Application Insights (Entra-authenticated ingestion). No app setting holds a secret.

param name string
param planName string
param location string
param tags object = {}

@description('App settings the code reads, as name/value pairs (built in main.bicep); added to the platform settings below.')
param appSettings array

param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string

@description('URL of the host-account container Flex Consumption deploys packages from.')
param deploymentContainerUrl string

param appInsightsConnectionString string

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances for the blob (Event Grid) trigger group; 0 lets it scale to zero.')
@minValue(0)
param blobAlwaysReady int = 0

// Settings the Functions platform reads (not the code): identity-based host storage and
// Entra-authenticated Application Insights. FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION are not app settings on Flex: functionAppConfig.runtime says it.
var platformSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: hostBlobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: hostQueueEndpoint
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: hostTableEndpoint
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  //checkov:skip=CKV_AZURE_225: Flex Consumption offers availability zones only in some regions; a lost instance only delays work, since every trigger is a queue, a timer or a retried Event Grid delivery
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  //checkov:skip=CKV_AZURE_17: incoming client certificates would be demanded of Event Grid's webhook deliveries to the inbox blob trigger; the app has no HTTP functions
  identity: {
    type: 'SystemAssigned'
  }
  //checkov:skip=CKV_AZURE_222: Event Grid delivers inbox events to the public webhook endpoint; the app serves no other HTTP route
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on queue, timer and Event Grid demand; work waits in queues (at-least-once), so no instance is kept for failover
  //checkov:skip=CKV_AZURE_213: there is no HTTP function to probe; the platform restarts unhealthy Flex instances and Application Insights reports failures
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(platformSettings, appSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: blobAlwaysReady > 0 ? [
          {
            name: 'blob'
            instanceCount: blobAlwaysReady
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing passwords: deployments authenticate with Entra ID (az login).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
