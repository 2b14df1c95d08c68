// Log Analytics workspace and a workspace-based Application Insights component.
param location string
param tags object
param logAnalyticsName string
param applicationInsightsName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Local (key) auth stays on: the app's OpenTelemetry exporter (shared/telemetry.py) sends with
    // the connection string alone. The Functions host already sends with the identity
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, Monitoring Metrics Publisher); turn this off
    // once the app's exporter is given a credential too.
    DisableLocalAuth: false
  }
}

output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
