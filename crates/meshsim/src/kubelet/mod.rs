//! The kubelet side: what runs inside a pod's containers and the API
//! endpoints that reach it. [`exec`] runs the programs a container has (a
//! shell, curl, wget, echo) behind `pods/exec` and `pods/attach`;
//! [`pilot_agent`] is the program the `istio-proxy` container adds;
//! [`podexec`] serves the exec and attach endpoints; `logstream` serves
//! `pods/log` from the container logs. It sits above the mesh (programs send
//! their traffic through [`crate::traffic::Network`], which the mesh
//! implements) and below the API server, which routes to it.

pub mod exec;
mod logstream;
pub mod pilot_agent;
pub mod podexec;
