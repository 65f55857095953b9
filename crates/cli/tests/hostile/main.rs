//! The hostile-input suite (issue 11): files that are not module files (special files, a
//! directory, a huge sparse file, a long combined chain), hostile describe inventories, a
//! damaged catalogue and concurrent `catalog add`s, and a read-only modflash home.

#[path = "../common/mod.rs"]
mod common;

mod catalog;
mod files;
mod home;
mod inventories;
