//! Kubernetes: deploy, verify with failure diagnosis, rollback, port-forward (kube-rs).
