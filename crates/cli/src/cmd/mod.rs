//! One module per command.

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
pub mod sim;
pub mod sim_serve;
pub mod udev;
pub mod wifi;
