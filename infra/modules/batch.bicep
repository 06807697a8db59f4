// Azure Batch account in Entra ID (AAD) authentication mode: no shared keys, the app
// authenticates with its managed identity (role assigned in app-roles.bicep).
// Its auto-storage account (application packages, autoStorageContainerName resource files)
// is linked through the Batch account's own user-assigned identity, so that account also
// runs without shared keys. An optional user-assigned identity is made for pools.

param accountName string
param autoStorageName string
param location string
param tags object = {}

@description('Create a user-assigned identity for pools (nodes read and write blobs with it instead of SAS).')
param createPoolIdentity bool = true

param accountIdentityName string
param poolIdentityName string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource accountIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: accountIdentityName
  location: location
  tags: tags
}

resource poolIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (createPoolIdentity) {
  name: poolIdentityName
  location: location
  tags: tags
}

resource autoStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: autoStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  //checkov:skip=CKV_AZURE_43: the name is a parameter checkov cannot evaluate; main.bicep builds it from the prefix (2-10 lowercase letters and digits) and a 6-character uniqueString, and tests/test_infra.py checks the rule
  //checkov:skip=CKV_AZURE_206: holds only application packages that are re-uploaded from their source; geo-replication would buy nothing
  //checkov:skip=CKV_AZURE_35: Batch nodes outside any VNet download application packages over the public endpoint, with an Entra identity only (shared key disabled)
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

resource autoStorageBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: autoStorage
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

// The Batch service manages application package containers in auto-storage with this identity.
resource accountOnAutoStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(autoStorage.id, accountIdentity.id, storageBlobDataContributor)
  scope: autoStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: accountIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Nodes of pools that carry the pool identity read application packages with it (read only).
resource poolOnAutoStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createPoolIdentity) {
  name: guid(autoStorage.id, poolIdentityName, storageBlobDataReader)
  scope: autoStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: createPoolIdentity ? poolIdentity.properties.principalId : ''
    principalType: 'ServicePrincipal'
  }
}

resource account 'Microsoft.Batch/batchAccounts@2024-07-01' = {
  name: accountName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${accountIdentity.id}': {}
    }
  }
  //checkov:skip=CKV_AZURE_76: customer-managed keys need a Key Vault and key rotation for task metadata only; Batch's Microsoft-managed encryption is used
  properties: {
    allowedAuthenticationModes: [
      'AAD'
    ]
    poolAllocationMode: 'BatchService'
    publicNetworkAccess: 'Enabled'
    encryption: {
      keySource: 'Microsoft.Batch'
    }
    autoStorage: {
      storageAccountId: autoStorage.id
      authenticationMode: 'BatchAccountManagedIdentity'
      nodeIdentityReference: createPoolIdentity ? {
        resourceId: poolIdentity.id
      } : null
    }
  }
  dependsOn: [
    accountOnAutoStorage
  ]
}

output id string = account.id
output name string = account.name
output endpoint string = 'https://${account.properties.accountEndpoint}'
output poolIdentityId string = createPoolIdentity ? poolIdentity.id : ''
output poolIdentityPrincipalId string = createPoolIdentity ? poolIdentity.properties.principalId : ''
output poolIdentityClientId string = createPoolIdentity ? poolIdentity.properties.clientId : ''
