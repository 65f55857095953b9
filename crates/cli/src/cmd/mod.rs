//! One module per command.

pub mod inspect;
