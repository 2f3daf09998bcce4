// Package deploy tests the Kubernetes manifests of the netflow_tcp_end agent
// (../../deploy/daemonset.yaml) and the values for the OpenTelemetry
// Collector Helm chart (../../deploy/helm-values.yaml). It has no code: its
// tests decode both files strictly with the Kubernetes API types and check
// them against the documented capabilities (../../docs/kubernetes.md,
// "Capabilities") and against what the collector needs; and that the
// component's module, which every ocb build takes in, stays lean.
package deploy
