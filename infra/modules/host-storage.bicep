// The Functions host's own account (AzureWebJobsStorage): leases, timer locks, blob-trigger
// receipts and its internal queues, plus the container Flex Consumption deploys packages from.
// Kept apart from the data account so the host's housekeeping never mixes with run data.

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
param name string

param location string
param tags object = {}

@description('Container holding the deployment package (functionAppConfig.deployment.storage).')
param deploymentContainer string = 'app-package'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  //checkov:skip=CKV_AZURE_206: host state (leases, receipts, the deployment package) is rebuilt by the host and by a new publish; geo-replication would buy nothing
  //checkov:skip=CKV_AZURE_35: the Flex app has no VNet integration and reaches its host storage over the public endpoint, with its managed identity only (shared key disabled)
  //checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public endpoint kept, shared key disabled, TLS 1.2, HTTPS only
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    accessTier: 'Hot'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = 'https://${account.name}.blob.${environment().suffixes.storage}'
output queueEndpoint string = 'https://${account.name}.queue.${environment().suffixes.storage}'
output tableEndpoint string = 'https://${account.name}.table.${environment().suffixes.storage}'
output deploymentContainerUrl string = 'https://${account.name}.blob.${environment().suffixes.storage}/${deploymentContainer}'
