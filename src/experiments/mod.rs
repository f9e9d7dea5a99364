//! Experiments that produce the published data files.

pub mod policies;
