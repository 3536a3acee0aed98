// Lets the Event Grid system topics' identities write dead-lettered events into the dead-letter
// container of pullwatch's storage account (deployed into pullwatch's resource group).
@description('Name of pullwatch\'s storage account.')
param storageAccountName string

@description('Name of the dead-letter blob container.')
param containerName string

@description('Principal IDs of the registry system topics\' system-assigned identities.')
param registryTopicPrincipalIds array = []

@description('Principal IDs of the cluster system topics\' system-assigned identities.')
param clusterTopicPrincipalIds array = []

@description('Principal IDs of the subscription system topics\' system-assigned identities.')
param subscriptionTopicPrincipalIds array = []

var principalIds = concat(registryTopicPrincipalIds, clusterTopicPrincipalIds, subscriptionTopicPrincipalIds)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

// Storage Blob Data Contributor on the dead-letter container only (not the account): Event Grid
// writes undeliverable events as blobs there with the topic's managed identity (no keys).
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: {
  name: guid(container.id, principalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe') // Storage Blob Data Contributor
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]
