//! One module per console page.

pub mod dead_letters;
pub mod message;
pub mod outcomes;
pub mod search;
