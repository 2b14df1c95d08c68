// An Application Insights workbook charting the app's graphhooks.* metrics (customMetrics).
param location string
param tags object
param applicationInsightsId string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsightsId, 'graphhooks-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Graph change notifications'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('workbook.json')
  }
}

output id string = workbook.id
