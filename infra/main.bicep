// `azd up` entry point: one resource group holding the Flex Consumption function app, its
// storage (no shared keys), a user-assigned identity with only the data roles it needs,
// Key Vault for the Graph client secret and certificates, and Application Insights.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region for every resource (one that offers Flex Consumption).')
param location string

@description('Object id of the user running azd: gets Key Vault Secrets Officer to upload the secret and certificates. Empty to skip.')
param principalId string = ''

@description('Microsoft Entra tenant that owns the Graph data. Empty means this subscription\'s tenant. Not used with tenantMode multi.')
param graphTenantId string = ''

@allowed(['single', 'multi'])
@description('TENANT_MODE: single (graphTenantId alone) or multi (every tenant that consents; graphClientId is then a multi-tenant app registration).')
param tenantMode string = 'single'

@description('App registration client id. Empty means the user-assigned managed identity (grant it Graph roles with scripts/grant-graph-permissions.sh).')
param graphClientId string = ''

@secure()
@description('App registration client secret, stored in Key Vault. Empty to use the managed identity.')
param graphClientSecret string = ''

@description('GRAPH_SUBSCRIPTIONS: JSON list of the resources to subscribe to.')
param graphSubscriptions string = '[]'

@allowed(['latest', 'full'])
@description('INITIAL_SYNC: latest (index silently) or full (report every item as created).')
param initialSync string = 'latest'

@description('Name of a Key Vault secret holding the PEM or PFX certificate Graph encrypts resource data for. Empty for none.')
param notificationCertificateName string = ''

@description('NOTIFICATION_CERTIFICATE_ID sent to Graph with the certificate (at most 128 characters).')
param notificationCertificateId string = ''

@description('Event Grid delivery: authorize Microsoft Graph to create a partner topic in the resource group, add the dead-letter container and give the app its EVENT_GRID_* settings (docs/deploy.md). Off: webhooks only, nothing Event Grid is created.')
param eventGridDelivery bool = false

@maxLength(50)
@description('Name of the partner topic Graph creates for Event Grid delivery (3 to 50 letters, digits and hyphens). Empty: graph-<environment>-<suffix>.')
param eventGridPartnerTopic string = ''

@minValue(1)
@maxValue(365)
@description('Days the authorization for Microsoft Graph to create the partner topic lasts, counted from each deployment (`azd provision --no-state` renews it).')
param eventGridAuthorizationDays int = 90

@description('Maximum Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Instance memory in MB (Flex Consumption sizes).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var tags = { 'azd-env-name': environmentName }
// A short, stable suffix: the same environment in the same subscription gets the same names.
var token = toLower(uniqueString(subscription().id, environmentName, location))
var appName = 'func-${token}'
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(token, 7)}'
// Event Grid delivery: the topic Graph creates (the name is ours to choose, at most 50 characters) and
// the container Event Grid dead-letters to once its retries are spent.
var eventGridTopic = empty(eventGridPartnerTopic) ? 'graph-${take(environmentName, 30)}-${token}' : eventGridPartnerTopic
var deadLetterContainerName = eventGridDelivery ? 'eventgrid-deadletter' : ''

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${token}'
    applicationInsightsName: 'appi-${token}'
  }
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'id-${token}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${token}'
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'kv-${token}'
    graphClientSecret: graphClientSecret
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    name: appName
    planName: 'plan-${token}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The host starts as soon as the app exists: its identity must already hold the storage roles.
  dependsOn: [rbac]
}

module settings 'app/settings.bicep' = {
  name: 'settings'
  scope: rg
  params: {
    appName: api.outputs.name
    hostName: api.outputs.defaultHostName
    storageAccountName: storage.outputs.name
    identityClientId: identity.outputs.clientId
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    graphTenantId: empty(graphTenantId) ? tenant().tenantId : graphTenantId
    tenantMode: tenantMode
    graphClientId: empty(graphClientId) ? identity.outputs.clientId : graphClientId
    graphClientSecretUri: vault.outputs.graphClientSecretUri
    notificationCertificateUri: empty(notificationCertificateName) ? '' : '${vault.outputs.uri}secrets/${notificationCertificateName}'
    notificationCertificateId: notificationCertificateId
    graphSubscriptions: graphSubscriptions
    initialSync: initialSync
    eventGridAzureSubscriptionId: eventGridDelivery ? subscription().subscriptionId : ''
    eventGridResourceGroup: eventGridDelivery ? rg.name : ''
    eventGridPartnerTopic: eventGridDelivery ? eventGridTopic : ''
    eventGridLocation: eventGridDelivery ? location : ''
  }
}

// Graph may create the partner topic only once authorized; the topic, its activation and its event
// subscription come later (the first `renew`, then scripts/activate-event-grid.sh).
module eventGrid 'app/eventgrid.bicep' = if (eventGridDelivery) {
  name: 'eventgrid'
  scope: rg
  params: {
    tags: tags
    authorizationDays: eventGridAuthorizationDays
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

// azd reads these into the environment (`azd env get-values`).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output SERVICE_API_BASE_URL string = 'https://${api.outputs.defaultHostName}'
// tenantMode multi: the redirect URI to add to the app registration (CONSENT_REDIRECT_URL's default),
// and the link a customer's admin opens to connect their tenant (both routes are anonymous).
output CONSENT_REDIRECT_URL string = tenantMode == 'multi' ? 'https://${api.outputs.defaultHostName}/api/consent' : ''
output CONSENT_START_URL string = tenantMode == 'multi' ? 'https://${api.outputs.defaultHostName}/api/consent/start' : ''
// Event Grid delivery (empty when off): the partner topic's coordinates, as the app's EVENT_GRID_*
// settings hold them, the dead-letter container, and when Graph's authorization to create the topic ends.
output EVENT_GRID_AZURE_SUBSCRIPTION_ID string = eventGridDelivery ? subscription().subscriptionId : ''
output EVENT_GRID_RESOURCE_GROUP string = eventGridDelivery ? rg.name : ''
output EVENT_GRID_PARTNER_TOPIC string = eventGridDelivery ? eventGridTopic : ''
output EVENT_GRID_LOCATION string = eventGridDelivery ? location : ''
output EVENT_GRID_DEAD_LETTER_CONTAINER string = deadLetterContainerName
output EVENT_GRID_AUTHORIZATION_EXPIRES string = eventGridDelivery ? eventGrid.outputs.authorizationExpiry : ''
