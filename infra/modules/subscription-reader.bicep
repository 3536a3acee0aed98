// Reader on one watched subscription for pullwatch's identity (deployed once per subscription,
// with scope: subscription(id) from main.bicep).
targetScope = 'subscription'

@description('Object (principal) ID of pullwatch\'s user-assigned identity.')
param principalId string

// Reader: discover managed clusters and container registries, read their properties (kubelet
// identity, network rules, roleAssignmentMode), list role assignments and role definitions (who
// may pull), and read public IPs, private endpoints and private DNS zones the network checks use.
// Read only: Reader has no write action and no data action.
resource readerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, 'acdd72a7-3385-48ef-bd42-f606fba81ae7')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7') // Reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
