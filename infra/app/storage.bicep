// The app's storage account: Functions host state, the deployment package, and the app's
// queues and tables. Shared-key access is off: everything authenticates with Entra ID.
param location string
param tags object
param name string
param deploymentContainerName string

@description('Container Event Grid dead-letters undeliverable events to (Event Grid delivery). Empty: none.')
param deadLetterContainerName string = ''

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_59:Graph's servers and the Flex Consumption host reach the account over the public endpoint; private endpoints need a VNet this template does not create. Access is Entra ID only (no shared keys).
  //checkov:skip=CKV_AZURE_206:Locally redundant storage is enough: the state (cursors, subscriptions) is rebuilt by a resync if lost, and GRS doubles the cost of a small app.
  //checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: without a VNet, the default network rule must allow the Flex Consumption host; shared keys are off, so every request needs an Entra ID token with a data role.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

// Flex Consumption deploys the app package from this container.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

// Notification items too large for a queue message wait here (shared/claims.py); the app creates the
// container on first use too. A claim is read again by retries, deferrals and poison replays, so the
// blobs are not deleted when read: they expire after 30 days (the rule below).
resource notificationItems 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'graph-notification-items'
  properties: { publicAccess: 'None' }
}

// Event Grid delivery: an event Event Grid could not deliver within its retry policy lands here as a
// blob under EVENTGRID/<year>/<month>/<day>/<hour>/ (the event subscription's name in capitals; "Dead
// letter and retry policies", learn.microsoft.com/azure/event-grid/manage-event-delivery). The partner
// topic's own identity writes them, with Storage Blob Data Contributor on this container, which
// scripts/activate-event-grid.sh grants once Graph has created the topic. No expiry rule: these are
// changes the app never stored, kept until an operator has dealt with them.
resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(deadLetterContainerName)) {
  parent: blobs
  // ARM checks the name of a resource it skips too, so it gets a valid one either way.
  name: empty(deadLetterContainerName) ? 'unused' : deadLetterContainerName
  properties: { publicAccess: 'None' }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-notification-items'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'blockBlob' ]
              prefixMatch: [ 'graph-notification-items/' ]
            }
            actions: {
              baseBlob: {
                delete: { daysAfterCreationGreaterThan: 30 }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deadLetterContainerName string = deadLetterContainerName
