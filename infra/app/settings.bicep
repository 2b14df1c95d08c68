// The app's full settings, written after the app exists because NOTIFICATION_URL carries the
// host's default function key, which exists only once the app does. `listKeys` on
// `Microsoft.Web/sites/host` (`default`) reads it at deployment time; a module is the place
// for that, as Bicep evaluates listKeys only for a resource deployed before the module starts.
// The key never appears in an output. Writing `config/appsettings` replaces every setting, so
// the storage settings api.bicep set are repeated here.
param appName string
param hostName string
param storageAccountName string
param identityClientId string
param applicationInsightsConnectionString string
param graphTenantId string
@allowed(['single', 'multi'])
param tenantMode string = 'single'
param graphClientId string
param graphClientSecretUri string
param notificationCertificateUri string
param notificationCertificateId string
param graphSubscriptions string
param initialSync string
// Event Grid delivery: the partner topic's coordinates, from which the app builds the
// `EventGrid:?azuresubscriptionid=...&resourcegroup=...&partnertopic=...&location=...` URL it gives
// Graph for the GRAPH_SUBSCRIPTIONS entries delivered that way. An empty topic means the channel is
// off, and none of them is set.
param eventGridAzureSubscriptionId string = ''
param eventGridResourceGroup string = ''
param eventGridPartnerTopic string = ''
param eventGridLocation string = ''

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

var functionKey = listKeys('${app.id}/host/default', '2024-04-01').functionKeys.default

var required = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  // The Functions host sends its telemetry with the identity rather than the key.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // DefaultAzureCredential picks the user-assigned identity with this.
  AZURE_CLIENT_ID: identityClientId
  GRAPH_CLIENT_ID: graphClientId
  // Graph calls the routes with the key; a request without it is refused by the host.
  HTTP_AUTH_LEVEL: 'function'
  NOTIFICATION_URL: 'https://${hostName}/api/notifications?code=${functionKey}'
  LIFECYCLE_NOTIFICATION_URL: 'https://${hostName}/api/lifecycle?code=${functionKey}'
  GRAPH_SUBSCRIPTIONS: graphSubscriptions
  INITIAL_SYNC: initialSync
  // The host refuses a larger request body itself (413) before the app sees it; the app's own limit
  // is the same 1 MiB (shared/notifications.py MAX_BODY_BYTES). Documented in "App settings reference
  // for Azure Functions" (MicrosoftDocs/azure-docs, articles/azure-functions/functions-app-settings.md,
  // FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: bytes, default 104,857,600).
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '1048576'
}

// single: the one tenant. multi: every tenant in table tenants, and GRAPH_TENANT_ID is not set (the app
// would say at start-up that it ignores it); the consent routes (/api/consent/start, /api/consent) are
// anonymous in the code, as a customer's admin arrives from the identity platform without the key.
var tenancy = tenantMode == 'multi' ? {
  TENANT_MODE: 'multi'
} : {
  GRAPH_TENANT_ID: graphTenantId
}

var secret = empty(graphClientSecretUri) ? {} : {
  GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${graphClientSecretUri})'
}

// The app reads the certificate from Key Vault itself (a secret URI), as a PEM or PFX secret.
var certificate = empty(notificationCertificateUri) ? {} : {
  NOTIFICATION_CERTIFICATE: notificationCertificateUri
  NOTIFICATION_CERTIFICATE_ID: notificationCertificateId
}

var eventGrid = empty(eventGridPartnerTopic) ? {} : {
  EVENT_GRID_AZURE_SUBSCRIPTION_ID: eventGridAzureSubscriptionId
  EVENT_GRID_RESOURCE_GROUP: eventGridResourceGroup
  EVENT_GRID_PARTNER_TOPIC: eventGridPartnerTopic
  // The region's name (westcentralus), not its display name, as Graph's EventGrid: URL requires.
  EVENT_GRID_LOCATION: eventGridLocation
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_63:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_65:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_66:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_80:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_88:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  //checkov:skip=CKV_AZURE_222:This resource is the appsettings dictionary, not the site's web configuration, which api.bicep sets; checkov applies its site checks to every sites/config resource.
  parent: app
  name: 'appsettings'
  properties: union(required, tenancy, secret, certificate, eventGrid)
}
