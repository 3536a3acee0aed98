// Parameters of infra/main.bicep. azd fills the first two from its environment; edit the watch
// lists below (or copy this file) for your subscriptions, clusters and registries.
// Webhook URLs are read from the environment so they never land in a file.
using 'main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'pullwatch')
param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')

// What to watch. Examples (uncomment and replace):
param watchedSubscriptions = [
  // {
  //   subscriptionId: '00000000-0000-0000-0000-000000000000'
  //   eventGridResourceGroup: 'rg-platform'
  // }
]
param watchedClusters = [
  // {
  //   id: '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod'
  //   location: 'westeurope'
  //   authorization: 'azure' // or 'kubernetes': then apply infra/k8s/pullwatch-rbac.yaml
  // }
]
param watchedRegistries = [
  // {
  //   id: '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/contosoacr'
  //   location: 'westeurope'
  //   roleAssignmentMode: 'LegacyRegistryPermissions' // or 'AbacRepositoryPermissions'
  // }
]

param readPullSecrets = false
param probe = false

param slackWebhookUrl = readEnvironmentVariable('PULLWATCH_SLACK_WEBHOOK_URL', '')
param teamsWebhookUrl = readEnvironmentVariable('PULLWATCH_TEAMS_WEBHOOK_URL', '')

// Event Grid needs the deployed code: azd's postdeploy hook sets this to true.
param deployEventGrid = bool(readEnvironmentVariable('PULLWATCH_DEPLOY_EVENT_GRID', 'false'))
