//! Test support shared by the modflash crates; a dev-dependency only, never linked into a product.
//!
//! - [`fixtures`]: the real module files in `tests/fixtures/real` and their `MANIFEST.json`;
//! - [`Home`]: a private modflash home in a temporary directory that runs the `modflash`
//!   binary (the CLI tests pass in `env!("CARGO_BIN_EXE_modflash")`, which only they know),
//!   and [`ReadOnlyHome`], the same home read-only;
//! - [`process`]: child processes with a time limit;
//! - [`interop`]: finding the peer tools (dfu-util, lrzsz, node, particle-cli …) or skipping
//!   loudly;
//! - [`terminal`]: a program on a pseudo-terminal, for prompts that need a person;
//! - `device` (feature `device`): virtual devices with a Device OS release installed, and the
//!   synthetic app of a release.
//!
//! With the `device` feature the testkit depends on `modflash-device` and so on every crate
//! below it (module, ymodem, dfu), whose own tests then form a dev-dependency cycle. Cargo
//! builds it, and their integration tests link the same copy of the crate as the testkit; but
//! their `#[cfg(test)]` unit tests are a second copy of the crate, where a testkit `Device`
//! is not the crate's own `Device`. Hence everything outside the feature deals in paths, bytes
//! and JSON only; `modflash-module`, `modflash-ymodem` and `modflash-dfu` ask for no feature (a
//! workspace build may switch it on by feature unification, which builds too), and
//! `modflash-device`'s unit tests take only fixtures from it.

pub mod fixtures;
pub mod home;
pub mod interop;
pub mod process;
pub mod terminal;

#[cfg(feature = "device")]
pub mod device;

pub use fixtures::{fixture, fixture_path, fixture_paths, manifest};
pub use home::{path_arg, Home, ReadOnlyHome};
pub use process::text;
