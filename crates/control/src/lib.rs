//! Particle USB control requests, sans-IO, for both ends of the cable.
//!
//! Since Device OS 0.8 a device in normal mode answers Particle's vendor requests on EP0: the
//! asynchronous *service requests* (INIT, CHECK, SEND, RECV, RESET; [`service`]) carry
//! protobuf requests of a [`RequestType`] ([`proto`]) and come back with a result
//! ([`ResultCode`]); a few *raw* 0x50 requests are answered at once. This crate holds that
//! vocabulary once for the whole workspace, plus the two state machines: [`host::HostRequest`]
//! (what a host sends next, how long it waits, what the answers mean) and
//! [`channel::Channel`] (what the device answers). Neither does I/O.
//!
//! ```
//! use modflash_control::host::HostRequest;
//! use modflash_control::proto::{GetDeviceModeRequest, GetDeviceModeReply};
//!
//! let mut request = HostRequest::message(&GetDeviceModeRequest {}).unwrap();
//! let first = request.next().unwrap();
//! assert_eq!(first.setup.to_bytes(), [0xC0, 1, 0, 0, 72, 0, 64, 0]); // INIT, type 72
//! ```
//!
//! Without the `alloc` feature only the vocabulary is built ([`usb`], [`service`],
//! [`request`], [`result`]).
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "alloc")]
pub mod channel;
#[cfg(feature = "alloc")]
pub mod host;
#[cfg(feature = "alloc")]
pub mod proto;
pub mod request;
pub mod result;
pub mod service;
pub mod usb;

pub use request::RequestType;
pub use result::{OtaCode, ResultCode, SystemError};
pub use service::{RawRequest, ServiceReply, ServiceRequest, Status};
pub use usb::{Setup, Stall};
