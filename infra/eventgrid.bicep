// Event Grid for pullwatch: a system topic on every watched registry, cluster and subscription,
// each with an event subscription delivering to the event_handler function. Deploy it AFTER the
// code (Event Grid validates an AzureFunction endpoint by looking the function up): main.bicep
// deploys it when deployEventGrid is true (azd runs that in its postdeploy hook), or deploy it
// on its own with these parameters.
//
// The event types and operations below are exactly shared.plan.HANDLED_EVENT_TYPES and
// HANDLED_OPERATIONS (tests/test_infra.py fails when they drift apart).
targetScope = 'subscription'

@description('Resource ID of pullwatch\'s Function App.')
param functionAppId string

@description('Resource ID of pullwatch\'s storage account (dead-letter container).')
param storageAccountId string

@description('Dead-letter blob container on that account.')
param deadLetterContainer string = 'eventgrid-deadletter'

@description('Watched subscriptions with Resource Manager events: [{subscriptionId, eventGridResourceGroup, topicName?}].')
param watchedSubscriptions array = []

@description('Watched AKS clusters: [{id, location, authorization, topicName?}].')
param watchedClusters array = []

@description('Watched container registries: [{id, location, roleAssignmentMode, topicName?}].')
param watchedRegistries array = []

@description('Schema every event subscription delivers in: EventGridSchema or CloudEventSchemaV1_0 (both handled by event_handler).')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

@description('Tags on the topics.')
param tags object = {}

// ACR: a push can fix a missing tag; a delete can break a running workload's image.
var registryEventTypes = [
  'Microsoft.ContainerRegistry.ImagePushed'
  'Microsoft.ContainerRegistry.ImageDeleted'
]

// AKS: a node pool roll brings new nodes (new kubelet credentials, new OS image) that must pull again.
var clusterEventTypes = [
  'Microsoft.ContainerService.NodePoolRollingSucceeded'
  'Microsoft.ContainerService.NodePoolRollingFailed'
]

// Resource Manager: writes and deletes, narrowed to the operations below.
var subscriptionEventTypes = [
  'Microsoft.Resources.ResourceWriteSuccess'
  'Microsoft.Resources.ResourceDeleteSuccess'
]

// 13 values: within Event Grid's limit of 25 advanced-filter values per event subscription.
// A resource group's delete is one event (none per resource in it): pullwatch forgets the clusters
// it held and re-checks the clusters that pulled from a registry it held.
var handledOperations = [
  'Microsoft.Authorization/roleAssignments/write'
  'Microsoft.Authorization/roleAssignments/delete'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.ContainerRegistry/registries/delete'
  'Microsoft.ContainerRegistry/registries/replications/write'
  'Microsoft.ContainerRegistry/registries/replications/delete'
  'Microsoft.ContainerRegistry/registries/privateEndpointConnections/write'
  'Microsoft.ContainerRegistry/registries/privateEndpointConnections/delete'
  'Microsoft.ContainerService/managedClusters/write'
  'Microsoft.ContainerService/managedClusters/delete'
  'Microsoft.ContainerService/managedClusters/agentPools/write'
  'Microsoft.ContainerService/managedClusters/agentPools/delete'
  'Microsoft.Resources/subscriptions/resourceGroups/delete'
]

module registryTopics 'modules/system-topic.bicep' = [for (r, i) in watchedRegistries: {
  name: 'pullwatch-eg-acr-${i}'
  scope: resourceGroup(split(r.id, '/')[2], split(r.id, '/')[4])
  params: {
    topicName: contains(r, 'topicName') ? r.topicName : 'pullwatch-${last(split(r.id, '/'))}'
    location: r.location
    topicType: 'Microsoft.ContainerRegistry.Registries'
    sourceId: r.id
    functionAppId: functionAppId
    includedEventTypes: registryEventTypes
    deadLetterStorageId: storageAccountId
    deadLetterContainer: deadLetterContainer
    eventDeliverySchema: eventDeliverySchema
    tags: tags
  }
}]

module clusterTopics 'modules/system-topic.bicep' = [for (c, i) in watchedClusters: {
  name: 'pullwatch-eg-aks-${i}'
  scope: resourceGroup(split(c.id, '/')[2], split(c.id, '/')[4])
  params: {
    topicName: contains(c, 'topicName') ? c.topicName : 'pullwatch-${last(split(c.id, '/'))}'
    location: c.location
    topicType: 'Microsoft.ContainerService.ManagedClusters'
    sourceId: c.id
    functionAppId: functionAppId
    includedEventTypes: clusterEventTypes
    deadLetterStorageId: storageAccountId
    deadLetterContainer: deadLetterContainer
    eventDeliverySchema: eventDeliverySchema
    tags: tags
  }
}]

module subscriptionTopics 'modules/system-topic.bicep' = [for (s, i) in watchedSubscriptions: {
  name: 'pullwatch-eg-sub-${i}'
  scope: resourceGroup(s.subscriptionId, s.eventGridResourceGroup)
  params: {
    topicName: contains(s, 'topicName') ? s.topicName : 'pullwatch-sub-${take(s.subscriptionId, 8)}'
    location: 'global'
    topicType: 'Microsoft.Resources.Subscriptions'
    sourceId: '/subscriptions/${s.subscriptionId}'
    functionAppId: functionAppId
    includedEventTypes: subscriptionEventTypes
    operationNames: handledOperations
    deadLetterStorageId: storageAccountId
    deadLetterContainer: deadLetterContainer
    eventDeliverySchema: eventDeliverySchema
    tags: tags
  }
}]

module deadLetterAccess 'modules/deadletter-access.bicep' = {
  name: 'pullwatch-eg-deadletter'
  scope: resourceGroup(split(storageAccountId, '/')[2], split(storageAccountId, '/')[4])
  params: {
    storageAccountName: last(split(storageAccountId, '/'))
    containerName: deadLetterContainer
    registryTopicPrincipalIds: [for (r, i) in watchedRegistries: registryTopics[i].outputs.principalId]
    clusterTopicPrincipalIds: [for (c, i) in watchedClusters: clusterTopics[i].outputs.principalId]
    subscriptionTopicPrincipalIds: [for (s, i) in watchedSubscriptions: subscriptionTopics[i].outputs.principalId]
  }
}
