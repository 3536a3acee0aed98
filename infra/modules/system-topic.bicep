// One Event Grid system topic on a watched source (registry, cluster or subscription) and
// pullwatch's event subscription on it, delivering to the event_handler function. Deployed into
// the source's resource group by eventgrid.bicep. An Azure resource may have only one system
// topic: if it already has one, pass its name as topicName and this updates it in place.
@description('Name of the system topic (an existing one for this source is reused by name).')
param topicName string

@description('Region of the source resource; global for a subscription.')
param location string

@description('Topic type: Microsoft.ContainerRegistry.Registries, Microsoft.ContainerService.ManagedClusters or Microsoft.Resources.Subscriptions.')
param topicType string

@description('Resource ID of the source (registry, cluster, or /subscriptions/ID).')
param sourceId string

@description('Resource ID of pullwatch\'s Function App.')
param functionAppId string

@description('Event types to deliver (pullwatch\'s HANDLED_EVENT_TYPES of this source).')
param includedEventTypes array

@description('Resource Manager operations (data.operationName) to deliver; empty: no operation filter.')
param operationNames array = []

@description('Resource ID of the storage account holding the dead-letter container.')
param deadLetterStorageId string

@description('Blob container for events that could not be delivered within the retry policy.')
param deadLetterContainer string

@description('Schema Event Grid delivers in. Both reach event_handler through the Event Grid trigger: the host answers either validation handshake for an AzureFunction endpoint, and azure-functions (requirements.txt) decodes a CloudEvent as func.CloudEvent.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

@description('Tags on the topic.')
param tags object = {}

// Event Grid allows at most 25 values across the advanced filters of one subscription.
var advancedFilters = empty(operationNames) ? [] : [
  {
    operatorType: 'StringIn'
    key: 'data.operationName'
    values: operationNames
  }
]

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: sourceId
    topicType: topicType
  }
}

resource delivery 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'pullwatch'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/event_handler'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: eventDeliverySchema
    filter: {
      includedEventTypes: includedEventTypes
      advancedFilters: advancedFilters
      enableAdvancedFilteringOnArrays: false
    }
    // Event Grid's own ceiling: retry for 24 hours, then dead-letter.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageId
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

output principalId string = topic.identity.principalId
