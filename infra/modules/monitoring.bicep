// Log Analytics workspace + workspace-based Application Insights with local (key) auth
// disabled: telemetry is accepted only with an Entra token, which the Function App gets from
// its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD).

param workspaceName string
param appInsightsName string
param location string
param tags object = {}

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// The connection string names the ingestion endpoint and the component; with local auth
// disabled it grants nothing without an Entra token.
output connectionString string = appInsights.properties.ConnectionString
