//! meshsim: a simulated Kubernetes API server and mesh.
