// Key Vault for the Graph client secret and the certificates (RBAC authorization, no access policies).
param location string
param tags object
param name string

@secure()
param graphClientSecret string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:The Flex Consumption app reads Key Vault references over the public endpoint (no VNet in this template); RBAC limits reads to the app's identity.
  //checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access stays on without a VNet and private endpoint.
  //checkov:skip=CKV_AZURE_42:Purge protection would stop `azd down --purge` from removing the vault; it holds only re-issuable credentials (soft delete stays on).
  //checkov:skip=CKV_AZURE_110:Same reason as CKV_AZURE_42: `azd down --purge` must be able to purge the vault.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // Off so that `azd down --purge` can remove the vault: it holds only credentials that can be
    // issued again (the app registration's secret, the notification certificate).
    enablePurgeProtection: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// A module, so the secret resource itself is unconditional (and checked as such by checkov).
module clientSecret 'secret.bicep' = if (!empty(graphClientSecret)) {
  name: 'graph-client-secret'
  params: {
    vaultName: vault.name
    name: 'graph-client-secret'
    value: graphClientSecret
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
output graphClientSecretUri string = empty(graphClientSecret) ? '' : clientSecret.outputs.uri
