//! llmsim: a discrete-event simulator of LLM inference serving.
//!
//! Data flows one way: a [`workload`] of requests goes through the [`engine`], whose GPUs
//! run [`scheduler`] policies priced by a [`cost`] model behind a [`router`]; the engine's
//! streamed statistics become [`metrics`] summaries. [`theory`] holds the closed forms the
//! simulator is validated against. Workloads can replay recorded [`trace`]s, and cost models
//! can be fitted to measured GPU profiles by [`calibrate`].
//! The study built on it (experiments, CSV output, report) is the `llmsim-study` crate.

pub mod calibrate;
pub mod config;
pub mod cost;
pub mod csvio;
pub mod dist;
pub mod engine;
pub mod files;
pub mod gpu;
pub mod kv;
pub mod limits;
pub mod lsq;
pub mod metrics;
pub mod model;
pub mod multiturn;
pub mod plan;
pub mod prefix;
pub mod request;
pub mod rng;
pub mod router;
pub mod scheduler;
pub mod search;
pub mod serving;
pub mod serving_fit;
pub mod sim;
pub mod stats;
pub mod theory;
pub mod trace;
pub mod validation;
pub mod workload;
