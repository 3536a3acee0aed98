// Roles for pullwatch's identity on one watched AKS cluster (deployed into the cluster's
// resource group from main.bicep). See infra/README.md, "Roles".
@description('Name of the managed cluster.')
param clusterName string

@description('Object (principal) ID of pullwatch\'s user-assigned identity.')
param principalId string

@description('How the cluster authorizes Kubernetes requests: azure (Entra ID with Azure RBAC) or kubernetes (Kubernetes RBAC: apply infra/k8s/pullwatch-rbac.yaml).')
@allowed([
  'azure'
  'kubernetes'
])
param authorization string = 'azure'

@description('The pull-secret check is enabled: grant secret read (Azure RBAC clusters).')
param readPullSecrets bool = false

@description('GUID of the custom node reader role (aks-custom-roles.bicep).')
param nodeReaderRoleId string = ''

@description('GUID of the custom pull-secret reader role (aks-custom-roles.bicep); empty unless readPullSecrets.')
param secretReaderRoleId string = ''

var azureRbac = authorization == 'azure'

resource cluster 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: clusterName
}

// Azure Kubernetes Service Cluster User Role: listClusterUserCredential, the kubeconfig pullwatch
// talks to the API server with (on Entra-enabled clusters it carries no credential: pullwatch
// presents its own Entra token for the AKS server application). Not the admin credential.
resource clusterUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cluster.id, principalId, '4abbcc35-e782-43d8-92c5-2d3f1bd2253f')
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4abbcc35-e782-43d8-92c5-2d3f1bd2253f') // Azure Kubernetes Service Cluster User Role
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Azure Kubernetes Service RBAC Reader (Azure RBAC clusters): read pods, events, service accounts,
// deployments, replica sets, stateful sets, daemon sets, jobs and cron jobs in every namespace.
// It excludes secrets and roles. Clusters with Kubernetes RBAC get the same rights from the
// ClusterRole in infra/k8s/pullwatch-rbac.yaml instead (Azure role assignments do not apply there).
resource rbacReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (azureRbac) {
  name: guid(cluster.id, principalId, '7f6c6a51-bcf8-42ba-9220-52d62157d7db')
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f6c6a51-bcf8-42ba-9220-52d62157d7db') // Azure Kubernetes Service RBAC Reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Custom node reader (Azure RBAC clusters): nodes are cluster-scoped and not in RBAC Reader.
resource nodeReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (azureRbac) {
  name: guid(cluster.id, principalId, 'pullwatch-node-reader')
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', nodeReaderRoleId) // pullwatch node reader (custom)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Custom pull-secret reader (Azure RBAC clusters), only when the pull-secret check is enabled:
// pullwatch reads imagePullSecrets' content to try their credentials against the registry.
resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (azureRbac && readPullSecrets) {
  name: guid(cluster.id, principalId, 'pullwatch-pull-secret-reader')
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretReaderRoleId) // pullwatch pull-secret reader (custom)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
