//! The host side of one control request, sans-IO (like a DFU engine without its transport):
//! it says which control transfer to make next and how long to wait before it, and consumes
//! what the device answered. INIT → (PENDING: CHECK until the buffer is ready) → SEND chunks
//! → CHECK with particle-usb's polling schedule → RECV chunks → result and reply bytes. A
//! request abandoned after INIT is cancelled with a RESET. No sleeping and no clock: the caller
//! waits as told and enforces the overall deadline ([`DEFAULT_TIMEOUT_MS`]).

use alloc::vec::Vec;

use crate::proto::Request;
use crate::request::RequestType;
use crate::result::ResultCode;
use crate::service::{
    ReplyError, ServiceReply, ServiceRequest, Status, MAX_PAYLOAD, MAX_TRANSFER_CHUNK,
};
use crate::usb::Setup;

/// Wait before CHECK number *n* of a polling phase (particle-usb `PollingPolicy.DEFAULT`);
/// later polls wait [`POLL_INTERVAL_MAX_MS`].
pub const POLL_DELAYS_MS: [u32; 9] = [50, 50, 100, 100, 250, 250, 500, 500, 1000];
/// Wait between polls after [`POLL_DELAYS_MS`] is used up.
pub const POLL_INTERVAL_MAX_MS: u32 = 1000;
/// When a host polls with CHECK: the wait before each poll of a phase, then a constant interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Polling {
    /// Wait before CHECK number *n* of a phase.
    pub delays_ms: &'static [u32],
    /// Wait between polls once `delays_ms` is used up.
    pub interval_ms: u32,
}

impl Polling {
    /// particle-usb's `PollingPolicy.DEFAULT` ([`POLL_DELAYS_MS`], then
    /// [`POLL_INTERVAL_MAX_MS`]), the schedule a [`HostRequest`] uses unless told otherwise.
    pub const PARTICLE_USB: Self = Self {
        delays_ms: &POLL_DELAYS_MS,
        interval_ms: POLL_INTERVAL_MAX_MS,
    };

    /// The wait before CHECK number `polls` of a phase.
    pub fn delay(&self, polls: usize) -> u32 {
        self.delays_ms
            .get(polls)
            .copied()
            .unwrap_or(self.interval_ms)
    }
}

/// particle-usb's default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 60_000;
/// The largest reply payload a [`HostRequest`] accepts unless told otherwise (GetModuleInfo of
/// a device with every region filled is a few KiB).
pub const DEFAULT_MAX_REPLY: usize = 64 * 1024;

/// One control transfer to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer<'a> {
    /// Milliseconds to wait before sending it (the polling backoff; 0 otherwise).
    pub wait_ms: u32,
    /// The SETUP packet. For IN requests `setup.length` is the most the host reads.
    pub setup: Setup,
    /// The OUT data stage (empty for IN requests).
    pub data: &'a [u8],
}

/// What the device answered to the whole request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's result (0 = success).
    pub result: i32,
    /// The reply payload (empty when the device sent none).
    pub data: Vec<u8>,
}

impl Response {
    /// The result, classified.
    pub fn code(&self) -> ResultCode {
        ResultCode::from_code(self.result)
    }

    /// The reply payload decoded as `M` (an empty payload is `M`'s default).
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.data.as_slice())
    }
}

/// Which service transfer a problem came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// INIT.
    Init,
    /// CHECK while waiting for the payload buffer.
    CheckBuffer,
    /// CHECK while waiting for the result.
    CheckResult,
    /// RECV.
    Recv,
}

impl core::fmt::Display for Stage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Init => "INIT",
            Self::CheckBuffer | Self::CheckResult => "CHECK",
            Self::Recv => "RECV",
        })
    }
}

/// Why a control request failed (besides the transport's own errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The payload is longer than the 16-bit INIT size allows.
    #[error("the request payload is {0} bytes; at most 65535 fit a control request")]
    PayloadTooLarge(usize),
    /// The device has as many requests active as it allows; try again later.
    #[error("the device is busy with other control requests")]
    Busy,
    /// The device could not allocate the request or its payload buffer.
    #[error("the device is out of memory for this request")]
    NoMemory,
    /// The device no longer knows the request (it was cancelled, e.g. by a RESET).
    #[error("the device cancelled the request")]
    Cancelled,
    /// The reply bytes are not a service reply.
    #[error("{stage} reply is malformed: {error}")]
    Malformed {
        /// Where.
        stage: Stage,
        /// What.
        error: ReplyError,
    },
    /// The device answered with a status that makes no sense at this point.
    #[error("unexpected status {status} in the {stage} reply")]
    UnexpectedStatus {
        /// Where.
        stage: Stage,
        /// The status.
        status: Status,
    },
    /// An accepted INIT without a request id.
    #[error("the INIT reply carries no request id")]
    MissingId,
    /// A completed request without a result.
    #[error("the final CHECK reply carries no result")]
    MissingResult,
    /// The reply payload is larger than the caller allows.
    #[error("the device announces a {size}-byte reply; at most {limit} are accepted")]
    ReplyTooLarge {
        /// Announced size.
        size: u32,
        /// The limit.
        limit: usize,
    },
    /// A RECV returned another length than asked.
    #[error("a RECV returned {got} bytes instead of {expected}")]
    ShortChunk {
        /// Bytes asked.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The caller gave up on the request (see [`HostRequest::abandon`]).
    #[error("the request was abandoned")]
    Abandoned,
}

/// Where the request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Init,
    /// CHECK until OK: `sending` = the buffer is awaited (then SEND), else the result.
    Poll {
        buffer: bool,
        polls: usize,
    },
    Send {
        offset: usize,
    },
    Recv {
        offset: usize,
        size: usize,
    },
    Done,
    Failed(HostError),
}

/// One control request from the host's side.
#[derive(Clone, Debug)]
pub struct HostRequest {
    request_type: RequestType,
    payload: Vec<u8>,
    max_reply: usize,
    id: Option<u16>,
    state: State,
    result: i32,
    reply: Vec<u8>,
    waited_ms: u64,
    polling: Polling,
}

impl HostRequest {
    /// A request of `request_type` with `payload` (at most 65535 bytes).
    pub fn new(request_type: RequestType, payload: Vec<u8>) -> Result<Self, HostError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(HostError::PayloadTooLarge(payload.len()));
        }
        Ok(Self {
            request_type,
            payload,
            max_reply: DEFAULT_MAX_REPLY,
            id: None,
            state: State::Init,
            result: 0,
            reply: Vec::new(),
            waited_ms: 0,
            polling: Polling::PARTICLE_USB,
        })
    }

    /// A request carrying the protobuf `message` (its type from [`Request::TYPE`]).
    pub fn message<R: Request>(message: &R) -> Result<Self, HostError> {
        Self::new(R::TYPE, message.encode_to_vec())
    }

    /// Accept reply payloads of at most `limit` bytes (default [`DEFAULT_MAX_REPLY`]).
    pub fn max_reply(mut self, limit: usize) -> Self {
        self.max_reply = limit;
        self
    }

    /// Polls with `polling` instead of particle-usb's schedule.
    pub fn polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// The request type.
    pub fn request_type(&self) -> RequestType {
        self.request_type
    }

    /// The id the device gave the request, once INIT was accepted.
    pub fn id(&self) -> Option<u16> {
        self.id
    }

    /// Total milliseconds the machine asked to wait so far (for callers on a virtual clock).
    pub fn waited_ms(&self) -> u64 {
        self.waited_ms
    }

    /// The next transfer, or `None` once the request is finished (see [`Self::outcome`]).
    pub fn next(&self) -> Option<Transfer<'_>> {
        let id = self.id.unwrap_or(0);
        let (wait_ms, request, data): (u32, ServiceRequest, &[u8]) = match &self.state {
            State::Init => (
                0,
                ServiceRequest::Init {
                    request_type: self.request_type,
                    size: self.payload.len() as u16,
                },
                &[],
            ),
            State::Poll { polls, .. } => (
                self.polling.delay(*polls),
                ServiceRequest::Check { id },
                &[],
            ),
            State::Send { offset } => {
                let end = (offset + MAX_TRANSFER_CHUNK).min(self.payload.len());
                let chunk = &self.payload[*offset..end];
                (
                    0,
                    ServiceRequest::Send {
                        id,
                        len: chunk.len() as u16,
                    },
                    chunk,
                )
            }
            State::Recv { offset, size } => (
                0,
                ServiceRequest::Recv {
                    id,
                    len: (size - offset).min(MAX_TRANSFER_CHUNK) as u16,
                },
                &[],
            ),
            State::Done | State::Failed(_) => return None,
        };
        Some(Transfer {
            wait_ms,
            setup: request.setup(),
            data,
        })
    }

    /// Feeds the device's answer to the transfer [`Self::next`] returned: the IN data stage,
    /// or nothing for an OUT transfer. An error finishes the request (send
    /// [`Self::abandon`]'s RESET afterwards if the device still holds it).
    pub fn complete(&mut self, data_in: &[u8]) -> Result<(), HostError> {
        let step = self.step(data_in);
        if let Err(e) = &step {
            self.state = State::Failed(e.clone());
        }
        step
    }

    fn step(&mut self, data_in: &[u8]) -> Result<(), HostError> {
        let reply = |stage| {
            ServiceReply::decode(data_in).map_err(|error| HostError::Malformed { stage, error })
        };
        match self.state.clone() {
            State::Init => {
                let r = reply(Stage::Init)?;
                match r.status {
                    Status::Ok | Status::Pending => {
                        self.id = Some(r.id.ok_or(HostError::MissingId)?);
                    }
                    Status::Busy => return Err(HostError::Busy),
                    Status::NoMemory => return Err(HostError::NoMemory),
                    status => {
                        return Err(HostError::UnexpectedStatus {
                            stage: Stage::Init,
                            status,
                        })
                    }
                }
                self.state = match (r.status, self.payload.is_empty()) {
                    (Status::Ok, true) => State::Poll {
                        buffer: false,
                        polls: 0,
                    },
                    (Status::Ok, false) => State::Send { offset: 0 },
                    (_, false) => State::Poll {
                        buffer: true,
                        polls: 0,
                    },
                    (status, true) => {
                        return Err(HostError::UnexpectedStatus {
                            stage: Stage::Init,
                            status,
                        })
                    }
                };
            }
            State::Poll { buffer, polls } => {
                self.waited_ms += u64::from(self.polling.delay(polls));
                let stage = if buffer {
                    Stage::CheckBuffer
                } else {
                    Stage::CheckResult
                };
                let r = reply(stage)?;
                match r.status {
                    Status::Pending => {
                        self.state = State::Poll {
                            buffer,
                            polls: polls + 1,
                        }
                    }
                    Status::Ok if buffer => self.state = State::Send { offset: 0 },
                    Status::Ok => {
                        self.result = r.result.ok_or(HostError::MissingResult)?;
                        let size = r.size.unwrap_or(0);
                        if size as usize > self.max_reply {
                            return Err(HostError::ReplyTooLarge {
                                size,
                                limit: self.max_reply,
                            });
                        }
                        self.state = if size == 0 {
                            State::Done
                        } else {
                            State::Recv {
                                offset: 0,
                                size: size as usize,
                            }
                        };
                    }
                    Status::NoMemory => return Err(HostError::NoMemory),
                    Status::NotFound => return Err(HostError::Cancelled),
                    status => return Err(HostError::UnexpectedStatus { stage, status }),
                }
            }
            State::Send { offset } => {
                let end = (offset + MAX_TRANSFER_CHUNK).min(self.payload.len());
                self.state = if end == self.payload.len() {
                    State::Poll {
                        buffer: false,
                        polls: 0,
                    }
                } else {
                    State::Send { offset: end }
                };
            }
            State::Recv { offset, size } => {
                let expected = (size - offset).min(MAX_TRANSFER_CHUNK);
                if data_in.len() != expected {
                    return Err(HostError::ShortChunk {
                        expected,
                        got: data_in.len(),
                    });
                }
                self.reply.extend_from_slice(data_in);
                let offset = offset + expected;
                self.state = if offset == size {
                    State::Done
                } else {
                    State::Recv { offset, size }
                };
            }
            State::Done | State::Failed(_) => {}
        }
        Ok(())
    }

    /// Gives up on the request (a transport error, a timeout, a failed reply): it fails with
    /// [`HostError::Abandoned`] unless it already finished, and when INIT had been accepted
    /// and the reply was not read to its end the RESET that frees it on the device is
    /// returned, as particle-usb sends it (its reply can be ignored).
    pub fn abandon(&mut self) -> Option<Setup> {
        let finished = matches!(self.state, State::Done);
        if !matches!(self.state, State::Done | State::Failed(_)) {
            self.state = State::Failed(HostError::Abandoned);
        }
        match self.id {
            Some(id) if !finished => Some(ServiceRequest::Reset { id }.setup()),
            _ => None,
        }
    }

    /// `None` while transfers remain; then the response or why it failed.
    pub fn outcome(&self) -> Option<Result<Response, HostError>> {
        match &self.state {
            State::Done => Some(Ok(Response {
                result: self.result,
                data: self.reply.clone(),
            })),
            State::Failed(e) => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// Runs the request to its end over `transfer`, which performs one control transfer
    /// (after waiting `wait_ms`) and returns the IN data stage (empty for OUT). A transport
    /// error ends the request; the RESET that cancels it on the device is then sent through
    /// `transfer` too, its outcome ignored.
    pub fn drive<E>(
        mut self,
        mut transfer: impl FnMut(&Transfer<'_>) -> Result<Vec<u8>, E>,
    ) -> Result<Response, DriveError<E>> {
        while let Some(t) = self.next() {
            let data = match transfer(&t) {
                Ok(data) => data,
                Err(e) => {
                    if let Some(reset) = self.abandon() {
                        let _ = transfer(&Transfer {
                            wait_ms: 0,
                            setup: reset,
                            data: &[],
                        });
                    }
                    return Err(DriveError::Transport(e));
                }
            };
            if let Err(e) = self.complete(&data) {
                if let Some(reset) = self.abandon() {
                    let _ = transfer(&Transfer {
                        wait_ms: 0,
                        setup: reset,
                        data: &[],
                    });
                }
                return Err(DriveError::Request(e));
            }
        }
        match self.outcome() {
            Some(Ok(response)) => Ok(response),
            Some(Err(e)) => Err(DriveError::Request(e)),
            None => Err(DriveError::Request(HostError::Abandoned)),
        }
    }
}

/// Why [`HostRequest::drive`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriveError<E> {
    /// The transport failed (stall, timeout, the device left).
    #[error("control transfer failed")]
    Transport(E),
    /// The request failed.
    #[error(transparent)]
    Request(HostError),
}

/// The wait before CHECK number `polls` of a phase in particle-usb's schedule.
pub fn poll_delay(polls: usize) -> u32 {
    Polling::PARTICLE_USB.delay(polls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{CHECK, INIT, RECV, RESET, SEND};
    use std::string::ToString;

    fn ok_id(id: u16) -> Vec<u8> {
        ServiceReply {
            id: Some(id),
            ..ServiceReply::status(Status::Ok)
        }
        .encode()
        .as_bytes()
        .to_vec()
    }

    fn status(s: Status) -> Vec<u8> {
        ServiceReply::status(s).encode().as_bytes().to_vec()
    }

    fn done(size: Option<u32>, result: i32) -> Vec<u8> {
        ServiceReply {
            size,
            result: Some(result),
            ..ServiceReply::status(Status::Ok)
        }
        .encode()
        .as_bytes()
        .to_vec()
    }

    #[test]
    fn empty_request_polls_then_reads_the_reply() {
        let mut r = HostRequest::new(RequestType::GET_MODULE_INFO, Vec::new()).unwrap();
        let t = r.next().unwrap();
        assert_eq!(t.setup.to_bytes(), [0xC0, INIT, 0, 0, 90, 0, 64, 0]);
        r.complete(&ok_id(1)).unwrap();
        let t = r.next().unwrap();
        assert_eq!((t.setup.request, t.setup.index, t.wait_ms), (CHECK, 1, 50));
        r.complete(&status(Status::Pending)).unwrap();
        assert_eq!(r.next().unwrap().wait_ms, 50);
        r.complete(&status(Status::Pending)).unwrap();
        assert_eq!(r.next().unwrap().wait_ms, 100);
        r.complete(&done(Some(5000), 0)).unwrap();
        let t = r.next().unwrap();
        assert_eq!((t.setup.request, t.setup.length), (RECV, 4096));
        r.complete(&[1; 4096]).unwrap();
        assert_eq!(r.next().unwrap().setup.length, 904);
        r.complete(&[2; 904]).unwrap();
        assert!(r.next().is_none());
        let response = r.outcome().unwrap().unwrap();
        assert_eq!((response.result, response.data.len()), (0, 5000));
        assert_eq!(r.waited_ms(), 200);
    }

    #[test]
    fn large_payload_waits_for_the_buffer_then_sends_in_chunks() {
        let mut r =
            HostRequest::new(RequestType::FIRMWARE_UPDATE_DATA, alloc::vec![7; 5000]).unwrap();
        r.complete(&{
            let mut p = status(Status::Pending);
            p[0] = 3;
            p.extend_from_slice(&9u16.to_le_bytes());
            p
        })
        .unwrap();
        assert_eq!(r.id(), Some(9));
        assert_eq!(r.next().unwrap().setup.request, CHECK);
        r.complete(&status(Status::Ok)).unwrap();
        let t = r.next().unwrap();
        assert_eq!(
            (t.setup.request, t.setup.length, t.data.len()),
            (SEND, 4096, 4096)
        );
        assert_eq!(t.wait_ms, 0);
        r.complete(&[]).unwrap();
        assert_eq!(r.next().unwrap().data.len(), 904);
        r.complete(&[]).unwrap();
        let t = r.next().unwrap();
        assert_eq!(
            (t.setup.request, t.wait_ms),
            (CHECK, 50),
            "polling starts afresh"
        );
        r.complete(&done(None, -290)).unwrap();
        let response = r.outcome().unwrap().unwrap();
        assert_eq!(response.code().to_string(), "out of range (-290)");
    }

    #[test]
    fn failures_are_typed_and_abandon_resets_the_request() {
        let mut r = HostRequest::new(RequestType::RESET, Vec::new()).unwrap();
        assert_eq!(r.complete(&status(Status::Busy)), Err(HostError::Busy));
        assert_eq!(r.abandon(), None, "nothing was created on the device");

        let mut r = HostRequest::new(RequestType::RESET, Vec::new()).unwrap();
        r.complete(&ok_id(4)).unwrap();
        assert_eq!(
            r.complete(&status(Status::NotFound)),
            Err(HostError::Cancelled)
        );
        let reset = r.abandon().unwrap();
        assert_eq!(reset.to_bytes(), [0xC0, RESET, 0, 0, 4, 0, 64, 0]);

        let mut r = HostRequest::new(RequestType::RESET, Vec::new()).unwrap();
        r.complete(&ok_id(4)).unwrap();
        assert!(matches!(
            r.complete(&[1, 0]),
            Err(HostError::Malformed { .. })
        ));
        let mut r = HostRequest::new(RequestType::RESET, Vec::new()).unwrap();
        r.complete(&ok_id(4)).unwrap();
        assert_eq!(
            r.complete(&status(Status::Ok)),
            Err(HostError::MissingResult)
        );
        let mut r = HostRequest::new(RequestType::RESET, Vec::new())
            .unwrap()
            .max_reply(10);
        r.complete(&ok_id(4)).unwrap();
        assert!(matches!(
            r.complete(&done(Some(11), 0)),
            Err(HostError::ReplyTooLarge { size: 11, .. })
        ));
        // PENDING to an INIT without payload is a protocol error.
        let mut r = HostRequest::new(RequestType::RESET, Vec::new()).unwrap();
        let mut pending = status(Status::Pending);
        pending[0] = 3;
        pending.extend_from_slice(&[1, 0]);
        assert!(matches!(
            r.complete(&pending),
            Err(HostError::UnexpectedStatus { .. })
        ));
        assert!(HostRequest::new(RequestType::ECHO, alloc::vec![0; 65536]).is_err());
    }

    #[test]
    fn polling_backs_off_to_one_second() {
        let delays: Vec<u32> = (0..12).map(poll_delay).collect();
        assert_eq!(
            delays,
            [50, 50, 100, 100, 250, 250, 500, 500, 1000, 1000, 1000, 1000]
        );
    }

    #[test]
    fn a_host_may_poll_on_its_own_schedule() {
        let fast = Polling {
            delays_ms: &[2, 5],
            interval_ms: 20,
        };
        let mut r = HostRequest::new(RequestType::GET_MODULE_INFO, Vec::new())
            .unwrap()
            .polling(fast);
        r.complete(&ok_id(1)).unwrap();
        let mut waits = Vec::new();
        for _ in 0..3 {
            waits.push(r.next().unwrap().wait_ms);
            r.complete(&status(Status::Pending)).unwrap();
        }
        assert_eq!(waits, [2, 5, 20]);
        assert_eq!(r.waited_ms(), 27);
    }
}
