// The data account: the contracts' containers and queues (docs/contracts.md).
// Entra ID only: no shared key, so no account key or key-signed SAS exists; the app
// signs its SAS for Batch nodes with a user delegation key.

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
param name string

param location string
param tags object = {}

@description('Blob containers to create (runs, inbox, profiles).')
param containers array

@description('Queues to create, poison queues included.')
param queues array

@description('Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@description('Replication: geo-redundant by default (run outputs are expensive to recompute); zone-redundant variants where the region offers them.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_ZRS'
])
param skuName string = 'Standard_GRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  //checkov:skip=CKV_AZURE_35: the Flex app (no VNet integration) and Batch nodes reach the account over its public endpoint; every request needs an Entra token or a user delegation SAS
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
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

@description('The container whose blobs the lifecycle rule deletes (runs/<run_id>/...).')
param runsContainer string = 'runs'

@description('Days after its last change that a blob in the runs container is deleted by the storage lifecycle rule; 0 (the default) keeps runs until they are deleted (dmsbatch delete, dmsbatch prune). Each blob goes by its own age, so choose far more days than a run lasts.')
@minValue(0)
@maxValue(36500)
param runsRetentionDays int = 0

// Off by default: runs are kept until a modeller deletes them (dmsbatch delete / prune).
resource runsLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (runsRetentionDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'delete-old-runs'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${runsContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: runsRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queues: {
  parent: queueService
  name: queue
}]

output id string = account.id
output name string = account.name
output blobEndpoint string = 'https://${account.name}.blob.${environment().suffixes.storage}'
output queueEndpoint string = 'https://${account.name}.queue.${environment().suffixes.storage}'
