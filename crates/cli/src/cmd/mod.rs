//! One module per command.

pub mod catalog;
pub mod flash;
pub mod inspect;
pub mod modules;
pub mod serial;
pub mod sim;
pub mod sim_serve;
