//! kubeplugin: what the three kubectl plugins share.
//!
//! Every plugin of this project (npexec, rbaclog, authzcheck) needs the same
//! plumbing: kubectl-compatible flags, a kube client built from them, pod and
//! service resolution, exec and log helpers, running istioctl, rendering the
//! same data as table/wide/JSON/JSON Lines, and mapping errors to the exit
//! codes in the README. Defining it once keeps the plugins consistent and their
//! `main.rs` files a few lines long.

pub mod client;
pub mod complete;
pub mod duration;
pub mod error;
pub mod exec;
pub mod flags;
pub mod istioctl;
pub mod logs;
pub mod manifests;
pub mod names;
pub mod picture;
pub mod policy_model;
pub mod render;
pub mod resources;
pub mod retry;
pub mod run;
pub mod selector;
pub mod target;
pub mod template;
pub mod text;

pub use client::Kube;
pub use error::{ApiOp, PluginError};
pub use flags::{ColorChoice, KubeFlags, Output, OutputArgs, OutputFormat, Picture};
pub use run::{Exit, PluginCli, main};
