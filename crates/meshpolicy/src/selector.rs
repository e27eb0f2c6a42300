//! Label selectors (matchLabels / matchExpressions) as Kubernetes evaluates them.
