// Two custom roles for AKS clusters that use Azure RBAC for Kubernetes authorization, where the
// built-in Azure Kubernetes Service RBAC Reader leaves out what pullwatch reads:
//   - nodes (cluster-scoped; RBAC Reader covers namespaced objects only): node pools, OS/arch,
//     taints for the scheduling and platform checks;
//   - secrets, only when the pull-secret check is enabled (readPullSecrets): Azure RBAC has no
//     metadata-only secret action, so secret names cannot be listed without it.
// Defined once in the deployment's subscription, assignable in every subscription that holds a
// watched cluster. No control-plane action; data actions are read only.
targetScope = 'subscription'

@description('Short name of the deployment; role names are unique per tenant, so they carry it.')
param environmentName string

@description('Subscription IDs where the roles may be assigned (those holding watched Azure-RBAC clusters).')
param assignableSubscriptions array

@description('Also define the pull-secret reader role (the pull-secret check is enabled).')
param readPullSecrets bool = false

var assignableScopes = [for s in union([subscription().subscriptionId], assignableSubscriptions): '/subscriptions/${s}']

resource nodeReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'pullwatch-node-reader', environmentName)
  properties: {
    roleName: 'pullwatch node reader (${environmentName})'
    description: 'Read Kubernetes nodes of AKS clusters with Azure RBAC (pullwatch scheduling and platform checks).'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.ContainerService/managedClusters/nodes/read'
        ]
        notDataActions: []
      }
    ]
  }
}

resource secretReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (readPullSecrets) {
  name: guid(subscription().id, 'pullwatch-pull-secret-reader', environmentName)
  properties: {
    roleName: 'pullwatch pull-secret reader (${environmentName})'
    description: 'Read Kubernetes secrets of AKS clusters with Azure RBAC (pullwatch pull-secret check, opt-in).'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.ContainerService/managedClusters/secrets/read'
        ]
        notDataActions: []
      }
    ]
  }
}

output nodeReaderRoleId string = nodeReader.name
output secretReaderRoleId string = readPullSecrets ? secretReader.name : ''
