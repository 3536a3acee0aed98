// Pull right for pullwatch's identity on one watched container registry (deployed into the
// registry's resource group from main.bicep): pullwatch asks the registry whether each image a
// cluster runs exists (HEAD of the manifest), which needs a repository token with pull scope.
@description('Name of the container registry.')
param registryName string

@description('Object (principal) ID of pullwatch\'s user-assigned identity.')
param principalId string

@description('The registry\'s roleAssignmentMode: LegacyRegistryPermissions (classic) or AbacRepositoryPermissions (ABAC).')
@allowed([
  'LegacyRegistryPermissions'
  'AbacRepositoryPermissions'
])
param roleAssignmentMode string = 'LegacyRegistryPermissions'

var abac = roleAssignmentMode == 'AbacRepositoryPermissions'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

// AcrPull (classic registries): registries/pull/read, nothing else (no push, no delete).
resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!abac) {
  name: guid(registry.id, principalId, '7f951dda-4ed3-4680-a7ca-43fe172d538d')
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d') // AcrPull
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Container Registry Repository Reader (ABAC registries ignore AcrPull): repository content and
// metadata read, on every repository of this registry only.
resource repositoryReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (abac) {
  name: guid(registry.id, principalId, 'b93aa761-3e63-49ed-ac28-beffa264f7ac')
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b93aa761-3e63-49ed-ac28-beffa264f7ac') // Container Registry Repository Reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
