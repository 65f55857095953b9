//! One module per command.

pub mod catalog;
pub mod flash;
pub mod inspect;
pub mod sim;
