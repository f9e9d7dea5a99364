//! The seed study on the llmsim library: [`experiments`] reproduce it as tables, which
//! [`output`] writes to disk and [`report`] turns into figures and the report.

pub mod experiments;
pub mod output;
pub mod report;
