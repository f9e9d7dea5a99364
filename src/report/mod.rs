//! The report: figures and prose generated from the data a reproduce run wrote.

pub mod data;
pub mod figures;
pub mod html;
pub mod plot;
pub mod study;
pub mod template;
