// One Key Vault secret (the Graph client secret).
param vaultName string
param name string

@secure()
param value string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:The secret's lifetime is the app registration's: Entra ID expires the credential itself, and a Key Vault expiry would only stop the app earlier.
  parent: vault
  name: name
  properties: {
    value: value
    contentType: 'text/plain'
  }
}

// The versionless URI: a Key Vault reference to it follows a rotated secret.
output uri string = '${vault.properties.vaultUri}secrets/${secret.name}'
