//! Container logs: per-container log storage and streaming (owned by the exec helper).
