//! Particle USB control requests from the host's side: [`ControlClient`] runs the sans-IO
//! [`HostRequest`] of `modflash-control` over any [`VendorPipe`] (libusb for a real device, a
//! virtual device's own EP0 in-process) with a total time limit on every request, and speaks
//! the requests modflash needs: the device id and system version, the module table, the
//! device mode, mode changes, and the firmware update (START, DATA chunks, FINISH).

use modflash_control::host::{HostError, HostRequest, Polling, Response, Transfer};
use modflash_control::proto::{
    CancelFirmwareUpdateRequest, DeviceMode, FinishFirmwareUpdateRequest,
    FirmwareUpdateDataRequest, GetDeviceIdRequest, GetDeviceModeRequest, GetModuleInfoReply,
    GetModuleInfoRequest, GetSystemVersionRequest, ModuleEntry, Request, StartFirmwareUpdateReply,
    StartFirmwareUpdateRequest,
};
use modflash_control::service::{raw_text, MAX_PAYLOAD};
use modflash_control::{RawRequest, RequestType, ResultCode, Setup};
use modflash_dfu::TransferError;

use crate::progress::{Cancel, Event, Observer, Operation};

/// Longest wait for one control transfer; a request's own limit may be shorter.
const TRANSFER_TIMEOUT_MS: u64 = 5_000;

/// How modflash polls with CHECK: Device OS handles a request on its system thread within a
/// few milliseconds, so the first poll comes after 2 ms rather than particle-usb's 50 ms
/// (which would cost 100 ms per 1 KB firmware chunk); it backs off to 250 ms.
pub const POLLING: Polling = Polling {
    delays_ms: &[2, 2, 5, 10, 20, 50, 100],
    interval_ms: 250,
};

/// The total time a request of `request_type` may take, from INIT to the last reply byte.
pub fn limit_ms(request_type: RequestType) -> u64 {
    match request_type {
        // START erases the update area first (up to a few MB of external flash).
        RequestType::START_FIRMWARE_UPDATE => 60_000,
        // FINISH checks the module (CRC, dependencies) before it replies.
        RequestType::FINISH_FIRMWARE_UPDATE => 20_000,
        // The module table: every module's CRC is computed first.
        RequestType::GET_MODULE_INFO => 10_000,
        _ => 5_000,
    }
}

/// One vendor control pipe to a device in normal (or listening, or safe) mode, with a clock.
pub trait VendorPipe {
    /// One vendor control transfer: `setup`, and for OUT requests its data stage (`data`,
    /// `setup.length` bytes). Returns the IN data stage (at most `setup.length` bytes; empty
    /// for OUT). Gives up after `timeout_ms`.
    fn transfer(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<Vec<u8>, TransferError>;
    /// Lets `ms` milliseconds pass (a sleep on a real bus, modelled time on a virtual device).
    fn wait(&mut self, ms: u32);
    /// Milliseconds on the pipe's clock (any origin): what time limits are measured on.
    fn now_ms(&self) -> u64;
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ControlError {
    /// The firmware does not answer Particle control requests (Device OS before 0.8, or no
    /// firmware running): the first transfer of the request was stalled.
    #[error("the device does not answer Particle control requests ({request} was stalled)")]
    #[diagnostic(
        code(modflash::control::not_spoken),
        help(
            "Device OS answers control requests from 0.8.0 on, in normal, listening and safe \
             mode; use DFU (--via dfu) or the serial console for this device"
        )
    )]
    NotSpoken {
        /// The request.
        request: RequestType,
    },
    /// A control transfer failed (the device left the bus, a timeout, a stall mid-request).
    #[error("{request}: the control transfer failed: {error}")]
    #[diagnostic(
        code(modflash::control::transfer),
        help("check the cable, then run the command again (`modflash devices` shows the device)")
    )]
    Transfer {
        /// The request.
        request: RequestType,
        /// The transport's error.
        #[source]
        error: TransferError,
    },
    /// The device's replies broke the service-request protocol (or it is busy or out of
    /// memory for requests).
    #[error("{request}: {error}")]
    #[diagnostic(
        code(modflash::control::protocol),
        help("another program may be using the device (close particle-cli); otherwise reset it and run the command again")
    )]
    Protocol {
        /// The request.
        request: RequestType,
        /// What went wrong.
        #[source]
        error: HostError,
    },
    /// The request did not finish within its time limit; it was cancelled on the device.
    #[error("{request}: no answer within {limit_ms} ms ({waiting})")]
    #[diagnostic(
        code(modflash::control::deadline),
        help("the device is busy or hung: reset it (RESET button, or `modflash reset`) and run the command again")
    )]
    Deadline {
        /// The request.
        request: RequestType,
        /// Its time limit.
        limit_ms: u64,
        /// What it was waiting for when the time was up.
        waiting: &'static str,
    },
    /// The device handled the request and answered with an error code.
    #[error("the device answered {request} with {code}")]
    #[diagnostic(code(modflash::control::failed), help("{}", failed_help(*code)))]
    Failed {
        /// The request.
        request: RequestType,
        /// Its result, in the device's words.
        code: ResultCode,
    },
    /// The reply payload is not the message the request type answers with.
    #[error("{request}: the reply is not the expected message: {error}")]
    #[diagnostic(
        code(modflash::control::reply),
        help("the device's firmware may speak another version of the protocol; please report this with `modflash modules --device …` output")
    )]
    Reply {
        /// The request.
        request: RequestType,
        /// The decoder's error.
        #[source]
        error: prost::DecodeError,
    },
}

impl ControlError {
    /// The device stalled the request at once: its firmware does not speak control requests.
    pub fn is_not_spoken(&self) -> bool {
        matches!(self, Self::NotSpoken { .. })
    }
}

fn failed_help(code: ResultCode) -> &'static str {
    match code.code() {
        -120 => "this firmware does not handle that request; a newer Device OS does",
        -1801 => "the device is protected: unlock it (Service Mode) first",
        -110 | -140 | -150 => "run the command again",
        _ => "see `modflash doctor` for the device's state",
    }
}

/// What the device reports as its module table: the protobuf table (either format), or the
/// describe JSON of Device OS 1.0.x on Gen2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleTable {
    /// GetModuleInfo's modules.
    Entries(Vec<ModuleEntry>),
    /// The module-info JSON (as the serial `s` command prints it).
    Describe(String),
}

/// How a firmware update over control requests ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateVerdict {
    /// FINISH succeeded: the device applies the module and resets.
    Accepted,
    /// The device refused the module at `request` (START: its size; DATA: a chunk; FINISH:
    /// the validation), with `code`. Nothing was applied.
    Refused {
        /// Where.
        request: RequestType,
        /// The device's result.
        code: ResultCode,
    },
    /// The update was cancelled between chunks (CANCEL sent); nothing was applied.
    Cancelled,
}

/// A host that speaks Particle control requests over `pipe`.
pub struct ControlClient<'p> {
    pipe: &'p mut dyn VendorPipe,
    transfers: u64,
}

impl<'p> ControlClient<'p> {
    /// A client over `pipe`.
    pub fn new(pipe: &'p mut dyn VendorPipe) -> Self {
        Self { pipe, transfers: 0 }
    }

    /// Control transfers sent so far.
    pub fn transfers(&self) -> u64 {
        self.transfers
    }

    fn transfer(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u64,
    ) -> Result<Vec<u8>, TransferError> {
        self.transfers += 1;
        let timeout = u32::try_from(timeout_ms.clamp(1, TRANSFER_TIMEOUT_MS)).unwrap_or(1);
        self.pipe.transfer(setup, data, timeout)
    }

    /// Runs `request` to its end within `limit_ms` on the pipe's clock. A request that runs
    /// out of time, fails or meets a transport error is cancelled on the device with RESET.
    pub fn run(&mut self, request: HostRequest, limit_ms: u64) -> Result<Response, ControlError> {
        let mut request = request.polling(POLLING);
        let ty = request.request_type();
        let start = self.pipe.now_ms();
        let mut first = true;
        let outcome = loop {
            let Some(Transfer {
                wait_ms,
                setup,
                data,
            }) = request.next()
            else {
                break Ok(());
            };
            let data = data.to_vec();
            let elapsed = self.pipe.now_ms().saturating_sub(start);
            if elapsed + u64::from(wait_ms) >= limit_ms {
                break Err(ControlError::Deadline {
                    request: ty,
                    limit_ms,
                    waiting: if request.id().is_some() {
                        "the device's result"
                    } else {
                        "the device to accept the request"
                    },
                });
            }
            if wait_ms > 0 {
                self.pipe.wait(wait_ms);
            }
            let left = limit_ms.saturating_sub(self.pipe.now_ms().saturating_sub(start));
            match self.transfer(&setup, &data, left) {
                Ok(reply) => {
                    if let Err(error) = request.complete(&reply) {
                        break Err(ControlError::Protocol { request: ty, error });
                    }
                }
                Err(TransferError::Stall) if first => {
                    break Err(ControlError::NotSpoken { request: ty })
                }
                Err(error) => break Err(ControlError::Transfer { request: ty, error }),
            }
            first = false;
        };
        if let Err(e) = outcome {
            if let Some(reset) = request.abandon() {
                if !matches!(
                    e,
                    ControlError::Transfer {
                        error: TransferError::NoDevice,
                        ..
                    }
                ) {
                    let _ = self.transfer(&reset, &[], TRANSFER_TIMEOUT_MS);
                }
            }
            return Err(e);
        }
        match request.outcome() {
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => Err(ControlError::Protocol { request: ty, error }),
            None => Err(ControlError::Protocol {
                request: ty,
                error: HostError::Abandoned,
            }),
        }
    }

    /// Sends `message` and returns the device's response, whatever its result.
    pub fn call<R: Request>(&mut self, message: &R) -> Result<Response, ControlError> {
        let request = HostRequest::message(message).map_err(|error| ControlError::Protocol {
            request: R::TYPE,
            error,
        })?;
        self.run(request, limit_ms(R::TYPE))
    }

    /// Sends `message`; a result other than success is an error; the reply decoded.
    pub fn ask<R: Request>(&mut self, message: &R) -> Result<R::Reply, ControlError> {
        let response = self.call(message)?;
        let code = response.code();
        if !code.is_ok() {
            return Err(ControlError::Failed {
                request: R::TYPE,
                code,
            });
        }
        response
            .decode::<R::Reply>()
            .map_err(|error| ControlError::Reply {
                request: R::TYPE,
                error,
            })
    }

    /// A raw 0x50 IN request (answered at once, as text).
    fn raw_text(&mut self, raw: RawRequest) -> Result<String, ControlError> {
        let ty = raw.request_type();
        match self.transfer(&raw.setup(false), &[], TRANSFER_TIMEOUT_MS) {
            Ok(reply) => Ok(raw_text(&reply).collect()),
            Err(TransferError::Stall) => Err(ControlError::NotSpoken { request: ty }),
            Err(error) => Err(ControlError::Transfer { request: ty, error }),
        }
    }

    /// The device id (24 lower-case hex digits): the raw request 20, answered at once by
    /// Device OS 0.7 and later, else GetDeviceId (20).
    pub fn device_id(&mut self) -> Result<String, ControlError> {
        let id = match self.raw_text(RawRequest::DeviceId) {
            Ok(id) => id,
            Err(_) => self.ask(&GetDeviceIdRequest {})?.id,
        };
        Ok(id.trim().to_ascii_lowercase())
    }

    /// The Device OS version string ("1.5.0"): the raw request 30, else GetSystemVersion (30).
    pub fn system_version(&mut self) -> Result<String, ControlError> {
        let version = match self.raw_text(RawRequest::SystemVersion) {
            Ok(v) => v,
            Err(_) => self.ask(&GetSystemVersionRequest {})?.version,
        };
        Ok(version.trim().to_string())
    }

    /// Whether the device is in listening mode (GetDeviceMode, 72).
    pub fn listening(&mut self) -> Result<bool, ControlError> {
        let reply = self.ask(&GetDeviceModeRequest {})?;
        Ok(reply.mode == DeviceMode::ListeningMode as i32)
    }

    /// The device's module table (GetModuleInfo, 90).
    pub fn modules(&mut self) -> Result<ModuleTable, ControlError> {
        let response = self.call(&GetModuleInfoRequest {})?;
        let code = response.code();
        if !code.is_ok() {
            return Err(ControlError::Failed {
                request: RequestType::GET_MODULE_INFO,
                code,
            });
        }
        // Device OS 1.0.x on Gen2 answers with the module-info JSON.
        if response.data.first() == Some(&b'{') {
            return Ok(ModuleTable::Describe(
                String::from_utf8_lossy(&response.data).into_owned(),
            ));
        }
        let reply =
            response
                .decode::<GetModuleInfoReply>()
                .map_err(|error| ControlError::Reply {
                    request: RequestType::GET_MODULE_INFO,
                    error,
                })?;
        Ok(ModuleTable::Entries(reply.entries()))
    }

    /// A request without fields that only needs to succeed (reset, DFU, safe mode, listening
    /// mode start and stop).
    pub fn command<R: Request>(&mut self, message: &R) -> Result<(), ControlError> {
        self.ask(message).map(|_| ())
    }

    /// Sends `data` as a firmware update: START {size, format 0}, DATA in the chunks the
    /// device asks for (progress reported as [`Operation::Write`]), FINISH. `cancel` is
    /// checked between chunks. A refusal is the device's verdict, not an error; errors are
    /// the transport's or the protocol's.
    pub fn firmware_update(
        &mut self,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<UpdateVerdict, ControlError> {
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let start = self.call(&StartFirmwareUpdateRequest { size, format: 0 })?;
        if !start.code().is_ok() {
            return Ok(UpdateVerdict::Refused {
                request: RequestType::START_FIRMWARE_UPDATE,
                code: start.code(),
            });
        }
        let reply: StartFirmwareUpdateReply =
            start.decode().map_err(|error| ControlError::Reply {
                request: RequestType::START_FIRMWARE_UPDATE,
                error,
            })?;
        // The payload is the chunk plus at most 5 bytes of protobuf framing.
        let chunk = (reply.chunk_size as usize).clamp(1, MAX_PAYLOAD - 8);
        let total = data.len() as u64;
        let mut done = 0u64;
        for piece in data.chunks(chunk) {
            if cancel.is_cancelled() {
                let _ = self.call(&CancelFirmwareUpdateRequest {});
                return Ok(UpdateVerdict::Cancelled);
            }
            let sent = self.call(&FirmwareUpdateDataRequest {
                data: piece.to_vec(),
            })?;
            if !sent.code().is_ok() {
                return Ok(UpdateVerdict::Refused {
                    request: RequestType::FIRMWARE_UPDATE_DATA,
                    code: sent.code(),
                });
            }
            done += piece.len() as u64;
            observer.event(Event::Progress {
                operation: Operation::Write,
                done,
                total,
            });
        }
        let finish = self.call(&FinishFirmwareUpdateRequest {
            validate_only: false,
        })?;
        Ok(if finish.code().is_ok() {
            UpdateVerdict::Accepted
        } else {
            UpdateVerdict::Refused {
                request: RequestType::FINISH_FIRMWARE_UPDATE,
                code: finish.code(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_control::service::{ServiceReply, Status, CHECK, INIT, RESET};
    use std::collections::VecDeque;

    /// A scripted device: answers each transfer from a queue (a missing answer is a stall),
    /// keeps every SETUP it saw, and a clock that only waits move.
    #[derive(Default)]
    struct Script {
        replies: VecDeque<Result<Vec<u8>, TransferError>>,
        seen: Vec<Setup>,
        now: u64,
        /// Answer every CHECK with PENDING.
        never_done: bool,
    }

    impl VendorPipe for Script {
        fn transfer(&mut self, setup: &Setup, _: &[u8], _: u32) -> Result<Vec<u8>, TransferError> {
            self.seen.push(*setup);
            self.now += 1;
            if self.never_done && setup.request == CHECK {
                return Ok(ServiceReply::status(Status::Pending)
                    .encode()
                    .as_bytes()
                    .to_vec());
            }
            self.replies
                .pop_front()
                .unwrap_or(Err(TransferError::Stall))
        }
        fn wait(&mut self, ms: u32) {
            self.now += u64::from(ms);
        }
        fn now_ms(&self) -> u64 {
            self.now
        }
    }

    fn reply(r: ServiceReply) -> Result<Vec<u8>, TransferError> {
        Ok(r.encode().as_bytes().to_vec())
    }

    fn accepted(id: u16) -> Result<Vec<u8>, TransferError> {
        reply(ServiceReply {
            id: Some(id),
            ..ServiceReply::status(Status::Ok)
        })
    }

    fn done(result: i32) -> Result<Vec<u8>, TransferError> {
        reply(ServiceReply {
            result: Some(result),
            ..ServiceReply::status(Status::Ok)
        })
    }

    #[test]
    fn a_stalled_first_transfer_means_no_control_requests() {
        let mut pipe = Script::default();
        let err = ControlClient::new(&mut pipe).modules().unwrap_err();
        assert!(err.is_not_spoken(), "{err}");
        assert_eq!(pipe.seen.len(), 1, "nothing to cancel: no RESET");
    }

    #[test]
    fn a_result_is_reported_in_the_device_words() {
        let mut pipe = Script::default();
        pipe.replies.extend([accepted(3), done(-120)]);
        let err = ControlClient::new(&mut pipe)
            .command(&modflash_control::proto::SafeModeRequest {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the device answered SAFE_MODE (60) with not supported (-120)"
        );
        assert_eq!(pipe.seen[1].request, CHECK);
    }

    #[test]
    fn a_request_that_never_completes_stops_at_its_limit_and_is_reset() {
        let mut pipe = Script {
            never_done: true,
            ..Script::default()
        };
        pipe.replies.push_back(accepted(7));
        let mut client = ControlClient::new(&mut pipe);
        let err = client.listening().unwrap_err();
        assert!(
            matches!(
                err,
                ControlError::Deadline {
                    limit_ms: 5_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("the device's result"), "{err}");
        let last = *pipe.seen.last().unwrap();
        assert_eq!((last.request, last.index), (RESET, 7), "cancelled by id");
        assert!(
            pipe.now < 5_000 + 10,
            "stopped at the limit: {} ms",
            pipe.now
        );
        assert!(pipe.seen.len() < 40, "{} polls", pipe.seen.len());
        assert_eq!(pipe.seen[0].request, INIT);
    }

    #[test]
    fn a_lost_device_is_a_transport_error_without_reset() {
        let mut pipe = Script::default();
        pipe.replies
            .extend([accepted(2), Err(TransferError::NoDevice)]);
        let err = ControlClient::new(&mut pipe).modules().unwrap_err();
        assert!(
            matches!(
                err,
                ControlError::Transfer {
                    error: TransferError::NoDevice,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(pipe.seen.len(), 2);
    }

    #[test]
    fn garbage_replies_are_protocol_errors() {
        let mut pipe = Script::default();
        pipe.replies.extend([Ok(vec![1, 2, 3])]);
        let err = ControlClient::new(&mut pipe).modules().unwrap_err();
        assert!(matches!(err, ControlError::Protocol { .. }), "{err}");
        let mut pipe = Script::default();
        pipe.replies.extend([
            accepted(1),
            reply(ServiceReply {
                size: Some(3),
                result: Some(0),
                ..ServiceReply::status(Status::Ok)
            }),
            Ok(vec![0xFF, 0xFF, 0xFF]),
        ]);
        let err = ControlClient::new(&mut pipe).modules().unwrap_err();
        assert!(matches!(err, ControlError::Reply { .. }), "{err}");
    }
}
