// pullwatch: one deployment at subscription scope creates pullwatch's resource group and
// resources (modules/app.bicep), grants its identity least-privilege roles on what it watches
// (subscriptions, clusters, registries) and, once the code is deployed, the Event Grid topics
// (eventgrid.bicep, when deployEventGrid is true). Parameters: infra/README.md.
targetScope = 'subscription'

// ---------------------------------------------------------------- where
@description('Short name of this deployment (azd environment name): used in resource names.')
@minLength(2)
@maxLength(20)
param environmentName string

@description('Region of pullwatch\'s resources (one that offers Flex Consumption).')
param location string

@description('Resource group created for pullwatch.')
param resourceGroupName string = 'rg-pullwatch-${environmentName}'

@description('Tags on every resource.')
param tags object = {}

// ---------------------------------------------------------------- what to watch
@description('Subscriptions to watch: [{subscriptionId, eventGridResourceGroup, topicName?}]. pullwatch gets Reader on each (and on the subscriptions of every watched cluster and registry); eventGridResourceGroup is an existing group in that subscription for its Resource Manager system topic.')
param watchedSubscriptions array = []

@description('AKS clusters to watch: [{id, location, authorization: azure|kubernetes, topicName?}]. Empty: every cluster in the watched subscriptions (without per-cluster roles and events).')
param watchedClusters array = []

@description('Container registries to check and receive push/delete events from: [{id, location, roleAssignmentMode: LegacyRegistryPermissions|AbacRepositoryPermissions, topicName?}].')
param watchedRegistries array = []

@description('Extra registry hosts to check for every cluster (PULLWATCH_REGISTRIES), e.g. registries outside Azure.')
param extraRegistryHosts array = []

// ---------------------------------------------------------------- opt-in checks
@description('Read pull-secret content and try its credentials (PULLWATCH_READ_SECRETS); grants secret read on Azure-RBAC clusters.')
param readPullSecrets bool = false

@description('Run in-cluster pull probe pods (PULLWATCH_PROBE); needs the probe Role of infra/k8s/pullwatch-rbac.yaml.')
param probe bool = false

@description('Namespace of the probe pods (PULLWATCH_PROBE_NAMESPACE).')
param probeNamespace string = 'pullwatch-probe'

@description('Registry host -> image the probe pulls (PULLWATCH_PROBE_IMAGES).')
param probeImages object = {}

// ---------------------------------------------------------------- notifications
@description('Slack incoming-webhook URL, stored in Key Vault (empty: keep the vault\'s secret as it is).')
@secure()
param slackWebhookUrl string = ''

@description('Teams Workflows webhook URL, stored in Key Vault (empty: keep the vault\'s secret as it is).')
@secure()
param teamsWebhookUrl string = ''

@description('The slack-webhook-url secret was set in the vault by hand: reference it.')
param slackSecretExists bool = false

@description('The teams-webhook-url secret was set in the vault by hand: reference it.')
param teamsSecretExists bool = false

@description('Routes (PULLWATCH_ROUTES): [{match: {cluster, subscription, tag}, min_severity, slack, teams}]; webhook values name app settings.')
param routes array = []

@description('Least severity notified on the default channels (PULLWATCH_MIN_SEVERITY).')
@allowed([
  'error'
  'warning'
  'unknown'
  'info'
])
param minSeverity string = 'warning'

@description('Still-open findings are repeated in the nightly digest at most this often, in hours (PULLWATCH_REMINDER_HOURS).')
param reminderHours string = '24'

// ---------------------------------------------------------------- tuning
@description('NCRONTAB schedule (UTC) of the nightly audit (PULLWATCH_AUDIT_SCHEDULE).')
param auditSchedule string = '0 0 2 * * *'

@description('Events for one cluster within this many seconds become one audit (PULLWATCH_DEBOUNCE_SECONDS).')
param debounceSeconds string = '60'

@description('Pods younger than this many seconds are not yet reported (PULLWATCH_POD_GRACE_SECONDS).')
param podGraceSeconds string = '300'

@description('REGISTRY_SLOW threshold in milliseconds (PULLWATCH_SLOW_MS).')
param slowMs string = '3000'

@description('Timeout of every network call in seconds (PULLWATCH_HTTP_TIMEOUT_SECONDS).')
param httpTimeoutSeconds string = '10'

@description('Most one registry request may take in all, in seconds; empty: 3 x the HTTP timeout (PULLWATCH_REGISTRY_DEADLINE_SECONDS).')
param registryDeadlineSeconds string = ''

@description('First backoff delay of bounded retries in seconds (PULLWATCH_RETRY_BASE_SECONDS).')
param retryBaseSeconds string = '1.0'

@description('Retries after the first attempt for 429 / 5xx answers (PULLWATCH_RETRIES).')
param retries string = '3'

@description('Concurrent requests per registry (PULLWATCH_REGISTRY_CONCURRENCY).')
param registryConcurrency string = '8'

@description('CIDRs registries may resolve to besides public addresses, comma-separated (PULLWATCH_ALLOW_ADDRESSES), e.g. 10.0.0.0/8 for private endpoints.')
param allowAddresses string = ''

@description('Tenant IDs whose registries may receive an Entra token, comma-separated (PULLWATCH_TRUSTED_TENANTS; empty: this tenant).')
param trustedTenants string = ''

@description('Azure Resource Manager endpoint (PULLWATCH_ARM_ENDPOINT); empty: the endpoint of the cloud deployed to (PULLWATCH_CLOUD is environment().name).')
param armEndpoint string = ''

@description('Microsoft Graph endpoint (PULLWATCH_GRAPH_ENDPOINT); empty: the cloud\'s.')
param graphEndpoint string = ''

// ---------------------------------------------------------------- hosting
@description('Resource ID of an existing subnet delegated to Microsoft.App/environments, for VNet integration (private AKS API servers, private registries); empty: none.')
param subnetId string = ''

@description('Most instances Flex Consumption may scale out to.')
param maximumInstanceCount int = 40

@description('Memory of each instance in MB (512, 2048 or 4096).')
param instanceMemoryMB int = 2048

@description('Schema Event Grid delivers events in: EventGridSchema or CloudEventSchemaV1_0 (both handled by event_handler).')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

@description('Deploy the Event Grid topics (eventgrid.bicep). Set true only after the code is deployed: Event Grid checks that the event_handler function exists.')
param deployEventGrid bool = false

// ---------------------------------------------------------------- derived
var clusterIds = [for c in watchedClusters: c.id]
var clusterSubscriptions = [for c in watchedClusters: split(c.id, '/')[2]]
var registrySubscriptions = [for r in watchedRegistries: split(r.id, '/')[2]]
var listedSubscriptions = [for s in watchedSubscriptions: s.subscriptionId]
// union() also removes duplicates.
var readerSubscriptions = union(listedSubscriptions, clusterSubscriptions, registrySubscriptions)
var azureRbacClusters = [for c in watchedClusters: (contains(c, 'authorization') ? c.authorization : 'azure') == 'azure']
var anyAzureRbacCluster = contains(azureRbacClusters, true)

// Every PULLWATCH_* app setting of shared/config.py SETTINGS (modules/app.bicep sets them).
var pullwatchSettings = {
  PULLWATCH_SUBSCRIPTIONS: join(readerSubscriptions, ',')
  PULLWATCH_CLUSTERS: join(clusterIds, ',')
  PULLWATCH_REGISTRIES: join(extraRegistryHosts, ',')
  PULLWATCH_AUDIT_SCHEDULE: auditSchedule
  PULLWATCH_READ_SECRETS: readPullSecrets ? 'true' : 'false'
  PULLWATCH_PROBE: probe ? 'true' : 'false'
  PULLWATCH_PROBE_NAMESPACE: probeNamespace
  PULLWATCH_PROBE_IMAGES: string(probeImages)
  PULLWATCH_ROUTES: string(routes)
  PULLWATCH_MIN_SEVERITY: minSeverity
  PULLWATCH_REMINDER_HOURS: reminderHours
  PULLWATCH_DEBOUNCE_SECONDS: debounceSeconds
  PULLWATCH_POD_GRACE_SECONDS: podGraceSeconds
  PULLWATCH_SLOW_MS: slowMs
  PULLWATCH_HTTP_TIMEOUT_SECONDS: httpTimeoutSeconds
  PULLWATCH_REGISTRY_DEADLINE_SECONDS: registryDeadlineSeconds
  PULLWATCH_RETRY_BASE_SECONDS: retryBaseSeconds
  PULLWATCH_RETRIES: retries
  PULLWATCH_REGISTRY_CONCURRENCY: registryConcurrency
  PULLWATCH_CLOUD: environment().name // AzureCloud | AzureUSGovernment | AzureChinaCloud: endpoints and suffixes follow it
  PULLWATCH_ARM_ENDPOINT: armEndpoint
  PULLWATCH_GRAPH_ENDPOINT: graphEndpoint
  PULLWATCH_CA_BUNDLE: '' // sandbox and TLS-intercepting proxies only
  PULLWATCH_HOSTS: '{}' // sandbox only
  PULLWATCH_ALLOW_ADDRESSES: allowAddresses
  PULLWATCH_TRUSTED_TENANTS: trustedTenants
  PULLWATCH_AUDIT_QUEUE: 'pullwatch-audit'
  PULLWATCH_STATE_TABLE: 'pullwatchstate'
}

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: union(tags, {
    'azd-env-name': environmentName
  })
}

module app 'modules/app.bicep' = {
  name: 'pullwatch-app'
  scope: group
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    pullwatchSettings: pullwatchSettings
    slackWebhookUrl: slackWebhookUrl
    teamsWebhookUrl: teamsWebhookUrl
    slackSecretExists: slackSecretExists
    teamsSecretExists: teamsSecretExists
    subnetId: subnetId
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

module subscriptionReaders 'modules/subscription-reader.bicep' = [for (s, i) in readerSubscriptions: {
  name: 'pullwatch-reader-${i}'
  scope: subscription(s)
  params: {
    principalId: app.outputs.identityPrincipalId
  }
}]

module customRoles 'modules/aks-custom-roles.bicep' = if (anyAzureRbacCluster) {
  name: 'pullwatch-aks-roles'
  params: {
    environmentName: environmentName
    assignableSubscriptions: clusterSubscriptions
    readPullSecrets: readPullSecrets
  }
}

module clusterAccess 'modules/cluster-access.bicep' = [for (c, i) in watchedClusters: {
  name: 'pullwatch-aks-${i}'
  scope: resourceGroup(split(c.id, '/')[2], split(c.id, '/')[4])
  params: {
    clusterName: last(split(c.id, '/'))
    principalId: app.outputs.identityPrincipalId
    authorization: contains(c, 'authorization') ? c.authorization : 'azure'
    readPullSecrets: readPullSecrets
    nodeReaderRoleId: anyAzureRbacCluster ? customRoles.outputs.nodeReaderRoleId : ''
    secretReaderRoleId: anyAzureRbacCluster ? customRoles.outputs.secretReaderRoleId : ''
  }
}]

module registryAccess 'modules/registry-access.bicep' = [for (r, i) in watchedRegistries: {
  name: 'pullwatch-acr-${i}'
  scope: resourceGroup(split(r.id, '/')[2], split(r.id, '/')[4])
  params: {
    registryName: last(split(r.id, '/'))
    principalId: app.outputs.identityPrincipalId
    roleAssignmentMode: contains(r, 'roleAssignmentMode') ? r.roleAssignmentMode : 'LegacyRegistryPermissions'
  }
}]

module eventGrid 'eventgrid.bicep' = if (deployEventGrid) {
  name: 'pullwatch-eventgrid'
  params: {
    functionAppId: app.outputs.functionAppId
    storageAccountId: app.outputs.storageAccountId
    deadLetterContainer: app.outputs.deadLetterContainer
    watchedSubscriptions: watchedSubscriptions
    watchedClusters: watchedClusters
    watchedRegistries: watchedRegistries
    eventDeliverySchema: eventDeliverySchema
    tags: tags
  }
}

// azd reads these into its environment (the resource group and the app it deploys the code to).
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output PULLWATCH_IDENTITY_PRINCIPAL_ID string = app.outputs.identityPrincipalId
output PULLWATCH_IDENTITY_CLIENT_ID string = app.outputs.identityClientId
output PULLWATCH_KEY_VAULT_NAME string = app.outputs.keyVaultName

// The same in camelCase for scripts (az returns upper-case output names in a changed casing).
output functionAppName string = app.outputs.functionAppName
output identityPrincipalId string = app.outputs.identityPrincipalId
output keyVaultName string = app.outputs.keyVaultName
