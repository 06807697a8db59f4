// Event Grid delivery of BlobCreated events to the Functions blob extension: the Event Grid-based
// blob trigger (the only blob trigger Flex Consumption runs). Two subscriptions on one system topic:
// dropped zips in the inbox container, and the stdout.txt/stderr.txt that Batch uploads for each task
// under runs/<run_id>/logs/ (each asks for a check of its run, so a run's manifest follows its last task
// within seconds instead of waiting for the timer).
// main.bicep deploys it only with inboxEventGrid=true, after the app is published with the
// trigger declared as source=EventGrid: the blobs_extension system key read below exists only
// once the host has loaded that trigger.
// The key goes from listKeys straight into the subscription; it is never output or logged.

param systemTopicName string
param functionAppName string
param inboxContainer string

@description('Python function name of the blob trigger (functions/inbox.py).')
param functionName string = 'inbox_zip'

@description('Python function name of the blob trigger on task logs (functions/run_logs.py).')
param logsFunctionName string = 'run_logs'

param runsContainer string = 'runs'

param location string
param tags object = {}

param dataAccountName string

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// the one read of the host's blobs_extension key, used by both webhook URLs below
var blobsExtensionKey = listKeys(resourceId('Microsoft.Web/sites/host', functionAppName, 'default'), '2024-04-01').systemKeys.blobs_extension

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: dataAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource inboxSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'inbox-to-${functionName}'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${inboxContainer}/blobs/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

resource logsSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'logs-to-${logsFunctionName}'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${logsFunctionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${runsContainer}/blobs/'
      subjectEndsWith: '.txt'
      advancedFilters: [
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: [
            '/logs/'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 10
      eventTimeToLiveInMinutes: 60
    }
  }
}

output systemTopicName string = systemTopic.name
