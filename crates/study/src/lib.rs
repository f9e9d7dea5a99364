//! The seed study on the llmsim library: [`experiments`] reproduce it as tables, which
//! [`output`] writes to disk and [`report`] turns into figures and the report; [`files`]
//! is the disk the front ends lend the core.

pub mod experiments;
pub mod files;
pub mod output;
pub mod report;
