//! Parsers for what Envoy and istioctl print: RBAC log lines, access logs, authz check tables, config dumps.
