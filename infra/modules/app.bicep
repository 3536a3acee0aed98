// pullwatch's own resources, in its resource group: the Function App on Flex Consumption, its
// user-assigned identity, storage (identity-only), Application Insights (Entra-only), Key Vault
// (webhook URLs) and the role assignments the app needs on exactly these resources.
// Roles on the watched subscriptions, clusters and registries are in the sibling modules.

@description('Short name used in resource names (letters and digits).')
param environmentName string

@description('Region of pullwatch\'s resources (a region that offers Flex Consumption).')
param location string

@description('Tags on every resource.')
param tags object = {}

@description('Settings of pullwatch (PULLWATCH_* app settings), computed in main.bicep.')
param pullwatchSettings object

@description('Secret Slack incoming-webhook URL written to Key Vault (empty: leave the Key Vault secret as it is).')
@secure()
param slackWebhookUrl string = ''

@description('Secret Teams Workflows webhook URL written to Key Vault (empty: leave the Key Vault secret as it is).')
@secure()
param teamsWebhookUrl string = ''

@description('The Slack secret already exists in the vault (set with az keyvault secret set): reference it.')
param slackSecretExists bool = false

@description('The Teams secret already exists in the vault (set with az keyvault secret set): reference it.')
param teamsSecretExists bool = false

@description('Resource ID of an existing subnet (delegated to Microsoft.App/environments) for VNet integration; empty: none.')
param subnetId string = ''

@description('Most instances Flex Consumption may scale out to.')
param maximumInstanceCount int = 40

@description('Memory of each instance in MB (Flex Consumption: 512, 2048 or 4096).')
param instanceMemoryMB int = 2048

@description('Days Log Analytics keeps pullwatch\'s logs.')
param logRetentionDays int = 30

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var storageName = take('stpw${token}', 24)
var deploymentContainer = 'app-package-${take(token, 8)}'
var deadLetterContainer = 'eventgrid-deadletter'
var vaultName = take('kv-pw-${token}', 24)
var slackSecretName = 'slack-webhook-url'
var teamsSecretName = 'teams-webhook-url'
var useSlack = !empty(slackWebhookUrl) || slackSecretExists
var useTeams = !empty(teamsWebhookUrl) || teamsSecretExists

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-pullwatch-${environmentName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------- storage (identity only)
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:Default action Allow: without VNet integration the Flex Consumption app reaches its storage over the public endpoint; only Entra-authorised calls succeed (shared keys are off).
  //checkov:skip=CKV_AZURE_59:Public network access is needed by the Functions host unless VNet integration and private endpoints are configured; shared keys are off.
  //checkov:skip=CKV_AZURE_206:LRS is a cost choice: the account holds transient state (queues, findings) that the next audit rebuilds.
  //checkov:skip=CKV_AZURE_43:The name is computed ('stpw' + uniqueString, lower case, at most 24 characters), which the check cannot evaluate.
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetter 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainer
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource auditQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: pullwatchSettings.PULLWATCH_AUDIT_QUEUE
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${pullwatchSettings.PULLWATCH_AUDIT_QUEUE}-poison'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource stateTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: pullwatchSettings.PULLWATCH_STATE_TABLE
}

// ---------------------------------------------------------------- monitoring (Entra only)
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-pullwatch-${environmentName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-pullwatch-${environmentName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------- Key Vault (webhook URLs)
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:Firewall default Allow: the Functions platform resolves Key Vault references over the public endpoint unless VNet integration is configured; access is Entra RBAC only.
  //checkov:skip=CKV_AZURE_189:Public network access: see CKV_AZURE_109; a private endpoint needs the optional VNet integration.
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource slackSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(slackWebhookUrl)) {
  //checkov:skip=CKV_AZURE_41:Webhook URLs do not expire; rotation is manual (az keyvault secret set).
  //checkov:skip=CKV_AZURE_114:contentType IS set below; the check does not look inside conditional resources.
  parent: vault
  name: slackSecretName
  properties: {
    value: slackWebhookUrl
    contentType: 'text/uri-list'
  }
}

resource teamsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrl)) {
  //checkov:skip=CKV_AZURE_41:Webhook URLs do not expire; rotation is manual (az keyvault secret set).
  //checkov:skip=CKV_AZURE_114:contentType IS set below; the check does not look inside conditional resources.
  parent: vault
  name: teamsSecretName
  properties: {
    value: teamsWebhookUrl
    contentType: 'text/uri-list'
  }
}

// ---------------------------------------------------------------- roles on pullwatch's own resources
// The Functions host keeps its state in AzureWebJobsStorage with this identity: queue triggers
// (audit queue and its poison queue) need Storage Queue Data Contributor on the account.
resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88') // Storage Queue Data Contributor
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The state table (open findings, outbox, sent messages, seen events, inventory): read and write entities.
resource tableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3') // Storage Table Data Contributor
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob: the Flex Consumption deployment container (the app package) and the host's own blobs
// (timer and singleton leases, function keys in azure-webjobs-secrets). Owner rather than
// Contributor because the Functions documentation for identity-based AzureWebJobsStorage names
// Storage Blob Data Owner for the host; Contributor would do for the package container alone,
// and Owner only adds POSIX ACL management, which does not apply to this non-HNS account.
resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b') // Storage Blob Data Owner
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references in app settings are resolved with keyVaultReferenceIdentity: read secret values, this vault only.
resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6') // Key Vault Secrets User
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights has local (instrumentation-key) auth disabled: telemetry is accepted only
// with an Entra token of an identity holding Monitoring Metrics Publisher on the component.
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb') // Monitoring Metrics Publisher
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- Function App (Flex Consumption)
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-pullwatch-${environmentName}'
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is available in a few regions only and adds always-ready cost; audits are retried from the queue.
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_17:No client certificates: Event Grid delivers with its system key and POST /api/check takes a function key.
  //checkov:skip=CKV_AZURE_222:Public network access: Event Grid's AzureFunction delivery and the on-demand check reach the app over its public endpoint.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; queue messages and Event Grid retries cover cold starts.
  //checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health-check path; the Functions host is monitored through Application Insights.
  name: 'func-pullwatch-${environmentName}-${take(token, 6)}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identity.id
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.12'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage, identity-based: no connection string, no key (AzureWebJobsStorage itself stays unset).
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        // Telemetry: Entra-authenticated (the component has local auth disabled).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
        // DefaultAzureCredential picks the user-assigned identity by its client id.
        {
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        {
          name: 'AZURE_TENANT_ID'
          value: subscription().tenantId
        }
        // Webhook URLs: Key Vault references resolved with keyVaultReferenceIdentity (empty: no default channel).
        {
          name: 'PULLWATCH_SLACK_WEBHOOK_URL'
          value: useSlack ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${slackSecretName}/)' : ''
        }
        {
          name: 'PULLWATCH_TEAMS_WEBHOOK_URL'
          value: useTeams ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${teamsSecretName}/)' : ''
        }
        {
          name: 'PULLWATCH_SUBSCRIPTIONS'
          value: pullwatchSettings.PULLWATCH_SUBSCRIPTIONS
        }
        {
          name: 'PULLWATCH_CLUSTERS'
          value: pullwatchSettings.PULLWATCH_CLUSTERS
        }
        {
          name: 'PULLWATCH_REGISTRIES'
          value: pullwatchSettings.PULLWATCH_REGISTRIES
        }
        {
          name: 'PULLWATCH_AUDIT_SCHEDULE'
          value: pullwatchSettings.PULLWATCH_AUDIT_SCHEDULE
        }
        {
          name: 'PULLWATCH_READ_SECRETS'
          value: pullwatchSettings.PULLWATCH_READ_SECRETS
        }
        {
          name: 'PULLWATCH_PROBE'
          value: pullwatchSettings.PULLWATCH_PROBE
        }
        {
          name: 'PULLWATCH_PROBE_NAMESPACE'
          value: pullwatchSettings.PULLWATCH_PROBE_NAMESPACE
        }
        {
          name: 'PULLWATCH_PROBE_IMAGES'
          value: pullwatchSettings.PULLWATCH_PROBE_IMAGES
        }
        {
          name: 'PULLWATCH_ROUTES'
          value: pullwatchSettings.PULLWATCH_ROUTES
        }
        {
          name: 'PULLWATCH_MIN_SEVERITY'
          value: pullwatchSettings.PULLWATCH_MIN_SEVERITY
        }
        {
          name: 'PULLWATCH_REMINDER_HOURS'
          value: pullwatchSettings.PULLWATCH_REMINDER_HOURS
        }
        {
          name: 'PULLWATCH_DEBOUNCE_SECONDS'
          value: pullwatchSettings.PULLWATCH_DEBOUNCE_SECONDS
        }
        {
          name: 'PULLWATCH_POD_GRACE_SECONDS'
          value: pullwatchSettings.PULLWATCH_POD_GRACE_SECONDS
        }
        {
          name: 'PULLWATCH_SLOW_MS'
          value: pullwatchSettings.PULLWATCH_SLOW_MS
        }
        {
          name: 'PULLWATCH_HTTP_TIMEOUT_SECONDS'
          value: pullwatchSettings.PULLWATCH_HTTP_TIMEOUT_SECONDS
        }
        {
          name: 'PULLWATCH_REGISTRY_DEADLINE_SECONDS'
          value: pullwatchSettings.PULLWATCH_REGISTRY_DEADLINE_SECONDS
        }
        {
          name: 'PULLWATCH_RETRY_BASE_SECONDS'
          value: pullwatchSettings.PULLWATCH_RETRY_BASE_SECONDS
        }
        {
          name: 'PULLWATCH_RETRIES'
          value: pullwatchSettings.PULLWATCH_RETRIES
        }
        {
          name: 'PULLWATCH_REGISTRY_CONCURRENCY'
          value: pullwatchSettings.PULLWATCH_REGISTRY_CONCURRENCY
        }
        {
          name: 'PULLWATCH_CLOUD'
          value: pullwatchSettings.PULLWATCH_CLOUD
        }
        {
          name: 'PULLWATCH_ARM_ENDPOINT'
          value: pullwatchSettings.PULLWATCH_ARM_ENDPOINT
        }
        {
          name: 'PULLWATCH_GRAPH_ENDPOINT'
          value: pullwatchSettings.PULLWATCH_GRAPH_ENDPOINT
        }
        {
          name: 'PULLWATCH_CA_BUNDLE'
          value: pullwatchSettings.PULLWATCH_CA_BUNDLE
        }
        {
          name: 'PULLWATCH_HOSTS'
          value: pullwatchSettings.PULLWATCH_HOSTS
        }
        {
          name: 'PULLWATCH_ALLOW_ADDRESSES'
          value: pullwatchSettings.PULLWATCH_ALLOW_ADDRESSES
        }
        {
          name: 'PULLWATCH_TRUSTED_TENANTS'
          value: pullwatchSettings.PULLWATCH_TRUSTED_TENANTS
        }
        {
          name: 'PULLWATCH_AUDIT_QUEUE'
          value: pullwatchSettings.PULLWATCH_AUDIT_QUEUE
        }
        {
          name: 'PULLWATCH_STATE_TABLE'
          value: pullwatchSettings.PULLWATCH_STATE_TABLE
        }
      ]
    }
  }
  dependsOn: [
    queueRole
    tableRole
    blobRole
    vaultRole
    telemetryRole
    auditQueue
    poisonQueue
    stateTable
    packageContainer
    slackSecret
    teamsSecret
  ]
}

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output storageAccountId string = storage.id
output storageAccountName string = storage.name
output deadLetterContainer string = deadLetter.name
output keyVaultName string = vault.name
output appInsightsName string = appInsights.name
