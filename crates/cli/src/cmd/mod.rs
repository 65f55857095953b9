//! One module per command.

#[cfg(unix)]
pub mod attach;
pub mod backups;
pub mod catalog;
pub mod devices;
pub mod dfu;
pub mod doctor;
pub mod flash;
pub mod fleet;
pub mod history;
pub mod inspect;
pub mod map;
pub mod mode;
pub mod modules;
pub mod plan;
pub mod serial;
pub mod shell;
pub mod sim;
#[cfg(unix)]
pub mod sim_serve;
pub mod udev;
pub mod wifi;
