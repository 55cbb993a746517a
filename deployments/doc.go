// Package deployments holds no code: its tests render and check the container images'
// Dockerfiles, the Compose stack and the Kubernetes manifests in this folder.
package deployments
