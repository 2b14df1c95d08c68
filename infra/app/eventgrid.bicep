// Event Grid delivery (main.bicep's eventGridDelivery): authorizes Microsoft Graph to create the
// partner topic in this resource group. Graph creates the topic itself, when `renew` first creates a
// subscription whose notificationUrl is `EventGrid:?...`; scripts/activate-event-grid.sh then
// activates it and routes it to the function (docs/deploy.md, "Event Grid delivery").
//
// "Authorize partner to create a partner topic" (learn.microsoft.com/azure/event-grid/
// subscribe-to-graph-api-events): a partner configuration named `default` in the resource group,
// naming the verified partner by its partner name or its partner registration's immutable id (either
// one suffices; both are given). The authorization expires: past its expiry Event Grid refuses the
// partner's requests to create, update or delete resources here (the `Partner` model of the ARM
// reference, learn.microsoft.com/azure/templates/microsoft.eventgrid/partnerconfigurations). Each
// deployment writes a new expiry counted from its own time, so deploying renews it; azd skips a
// provision whose template and parameters did not change, so `azd provision --no-state` is the renewal.
param tags object

@minValue(1)
@maxValue(365)
@description('Days the Microsoft Graph authorization lasts from this deployment (Event Grid allows 1 to 365).')
param authorizationDays int

@description('The deployment time the expiry is counted from; leave the default.')
param now string = utcNow()

var authorizationExpiry = dateTimeAdd(now, 'P${authorizationDays}D')

resource partnerConfiguration 'Microsoft.EventGrid/partnerConfigurations@2022-06-15' = {
  name: 'default'
  // Not regional: Az.EventGrid's New-AzEventGridPartnerConfiguration example creates it in 'global'.
  location: 'global'
  tags: tags
  properties: {
    partnerAuthorization: {
      // The expiry below must fall within this many days of now.
      defaultMaximumExpirationTimeInDays: authorizationDays
      authorizedPartnersList: [
        {
          // Microsoft Graph API, a verified partner. The immutable id is that of Graph's partner
          // registration, the one public templates authorizing Graph use; either field identifies it.
          partnerName: 'MicrosoftGraphAPI'
          partnerRegistrationImmutableId: 'c02e0126-707c-436d-b6a1-175d2748fb58'
          authorizationExpirationTimeInUtc: authorizationExpiry
        }
      ]
    }
  }
}

output authorizationExpiry string = authorizationExpiry
