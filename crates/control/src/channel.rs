//! The device side of the service requests, sans-IO (Device OS
//! `usb_control_request_channel.cpp`): [`Channel::setup`] answers INIT / CHECK / SEND / RECV /
//! RESET exactly as the device does; its owner (the system firmware) takes the requests whose
//! payload has arrived ([`Channel::take_ready`]), handles them and completes them with a
//! result and reply ([`Channel::complete`]), optionally with a completion hook that comes
//! back ([`Channel::take_completed`]) once the host has received the final reply, or the
//! request was cancelled.
//!
//! Memory is bounded: at most [`MAX_ACTIVE_REQUESTS`] requests of at most [`MAX_PAYLOAD`]
//! bytes each, plus the replies the owner sets.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::request::RequestType;
use crate::result::SystemError;
use crate::service::{
    ServiceReply, ServiceRequest, Status, ALL_REQUESTS, MAX_ACTIVE_REQUESTS, MAX_POOLED_BUFFER,
    SERVICE_REPLY_LENGTH,
};
use crate::usb::{Setup, Stall};

/// Where a request stands on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// The payload buffer is being allocated by the system thread (INIT replied PENDING).
    AllocPending,
    /// The allocation failed; the next CHECK replies NO_MEMORY and drops the request.
    AllocFailed,
    /// Waiting for SEND chunks.
    RecvPayload,
    /// Queued for, or being handled by, the owner.
    Pending,
    /// Handled; the result (and reply) wait for CHECK (and RECV).
    Done,
}

/// A request whose payload has arrived, for the owner to handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Request id (what [`Channel::complete`] takes).
    pub id: u16,
    /// Request type.
    pub request_type: RequestType,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A completion hook coming back: the host received the final reply (`result` 0), or the
/// request was cancelled by RESET (−140) or a bus reset (−150).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed<H> {
    /// The hook given to [`Channel::complete`].
    pub hook: H,
    /// 0, −140 or −150.
    pub result: i32,
}

#[derive(Clone, Debug)]
struct Active<H> {
    id: u16,
    request_type: RequestType,
    state: RequestState,
    size: usize,
    payload: Vec<u8>,
    /// SEND offset while receiving; RECV offset once done.
    offset: usize,
    /// Handed to the owner by `take_ready`.
    taken: bool,
    result: i32,
    reply: Vec<u8>,
    hook: Option<H>,
}

/// The device's control-request channel; `H` is the owner's completion-hook type.
#[derive(Clone, Debug)]
pub struct Channel<H> {
    active: Vec<Active<H>>,
    /// Requests cancelled while the owner was handling them: their hook still runs, with the
    /// cancellation's result, when the owner completes them.
    detached: Vec<(u16, i32)>,
    last_id: u16,
    completed: VecDeque<Completed<H>>,
}

impl<H> Default for Channel<H> {
    fn default() -> Self {
        Self {
            active: Vec::new(),
            detached: Vec::new(),
            last_id: 0,
            completed: VecDeque::new(),
        }
    }
}

impl<H> Channel<H> {
    /// An idle channel (the first request gets id 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests active now (at most [`MAX_ACTIVE_REQUESTS`]).
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// The state of request `id`, if it is active.
    pub fn state(&self, id: u16) -> Option<RequestState> {
        self.find(id).map(|i| self.active[i].state)
    }

    fn find(&self, id: u16) -> Option<usize> {
        self.active.iter().position(|r| r.id == id)
    }

    /// One vendor control transfer: a service request (bRequest 1–5) with `data_out` its OUT
    /// data stage (at least wLength bytes; ignored for IN). Returns the IN data stage (empty
    /// for SEND) or a STALL, as Device OS does: INIT, CHECK and RESET need wLength 64, SEND
    /// and RECV a known id in the right state and a chunk inside the payload; anything else
    /// (other bRequest values, the raw 0x50 requests, which the owner answers itself)
    /// stalls.
    pub fn setup(&mut self, setup: &Setup, data_out: &[u8]) -> Result<Vec<u8>, Stall> {
        let request = ServiceRequest::parse(setup).ok_or(Stall)?;
        let reply = match request {
            ServiceRequest::Init { request_type, size } => {
                self.needs_reply_buffer(setup)?;
                self.init(request_type, usize::from(size))
            }
            ServiceRequest::Check { id } => {
                self.needs_reply_buffer(setup)?;
                self.check(id)
            }
            ServiceRequest::Reset { id } => {
                self.needs_reply_buffer(setup)?;
                self.reset(id)
            }
            ServiceRequest::Send { id, len } => {
                let chunk = data_out.get(..usize::from(len)).ok_or(Stall)?;
                self.send(id, chunk)?;
                return Ok(Vec::new());
            }
            ServiceRequest::Recv { id, len } => return self.recv(id, usize::from(len)),
        };
        Ok(reply.encode().as_bytes().to_vec())
    }

    /// The HAL gives the channel its reply buffer only for wLength ≤ 64, and the channel
    /// needs at least 64.
    fn needs_reply_buffer(&self, setup: &Setup) -> Result<(), Stall> {
        if setup.length == SERVICE_REPLY_LENGTH {
            Ok(())
        } else {
            Err(Stall)
        }
    }

    fn init(&mut self, request_type: RequestType, size: usize) -> ServiceReply {
        if self.active.len() >= MAX_ACTIVE_REQUESTS {
            return ServiceReply::status(Status::Busy);
        }
        self.last_id = self.last_id.wrapping_add(1);
        let (state, status) = match size {
            0 => (RequestState::Pending, Status::Ok),
            s if s <= MAX_POOLED_BUFFER => (RequestState::RecvPayload, Status::Ok),
            _ => (RequestState::AllocPending, Status::Pending),
        };
        self.active.push(Active {
            id: self.last_id,
            request_type,
            state,
            size,
            payload: Vec::new(),
            offset: 0,
            taken: false,
            result: SystemError::Unknown.code(),
            reply: Vec::new(),
            hook: None,
        });
        ServiceReply {
            id: Some(self.last_id),
            ..ServiceReply::status(status)
        }
    }

    fn check(&mut self, id: u16) -> ServiceReply {
        let Some(i) = self.find(id) else {
            return ServiceReply::status(Status::NotFound);
        };
        let r = &self.active[i];
        match r.state {
            RequestState::AllocPending | RequestState::Pending => {
                ServiceReply::status(Status::Pending)
            }
            RequestState::AllocFailed => {
                self.active.remove(i);
                ServiceReply::status(Status::NoMemory)
            }
            RequestState::RecvPayload => ServiceReply::status(Status::Ok),
            RequestState::Done => {
                let reply = ServiceReply {
                    result: Some(r.result),
                    size: (!r.reply.is_empty()).then_some(r.reply.len() as u32),
                    ..ServiceReply::status(Status::Ok)
                };
                if r.reply.is_empty() {
                    // Completed once this reply's data stage is sent: a second CHECK finds
                    // nothing.
                    self.finish(i, 0);
                }
                reply
            }
        }
    }

    fn send(&mut self, id: u16, chunk: &[u8]) -> Result<(), Stall> {
        let i = self.find(id).ok_or(Stall)?;
        let r = &mut self.active[i];
        if r.state != RequestState::RecvPayload
            || chunk.is_empty()
            || r.offset + chunk.len() > r.size
        {
            return Err(Stall);
        }
        r.payload.extend_from_slice(chunk);
        r.offset += chunk.len();
        if r.offset == r.size {
            r.offset = 0;
            r.state = RequestState::Pending;
        }
        Ok(())
    }

    fn recv(&mut self, id: u16, len: usize) -> Result<Vec<u8>, Stall> {
        let i = self.find(id).ok_or(Stall)?;
        let r = &mut self.active[i];
        if r.state != RequestState::Done || len == 0 || r.offset + len > r.reply.len() {
            return Err(Stall);
        }
        let chunk = r.reply[r.offset..r.offset + len].to_vec();
        r.offset += len;
        if r.offset == r.reply.len() {
            self.finish(i, 0);
        }
        Ok(chunk)
    }

    fn reset(&mut self, id: u16) -> ServiceReply {
        let cancelled = SystemError::Cancelled.code();
        if id == ALL_REQUESTS {
            while !self.active.is_empty() {
                self.finish(0, cancelled);
            }
            return ServiceReply::status(Status::Ok);
        }
        match self.find(id) {
            Some(i) => {
                self.finish(i, cancelled);
                ServiceReply::status(Status::Ok)
            }
            None => ServiceReply::status(Status::NotFound),
        }
    }

    /// A USB bus reset (the HAL's vendor-request RESET state): every request is cancelled
    /// with −150.
    pub fn bus_reset(&mut self) {
        while !self.active.is_empty() {
            self.finish(0, SystemError::Aborted.code());
        }
    }

    /// Removes active request `i`; its hook comes back with `result`. A request the owner is
    /// still handling is only detached: its hook runs when the owner completes it.
    fn finish(&mut self, i: usize, result: i32) {
        let r = self.active.remove(i);
        if r.state == RequestState::Pending && r.taken {
            self.detached.push((r.id, result));
        } else if let Some(hook) = r.hook {
            self.completed.push_back(Completed { hook, result });
        }
    }

    /// The system thread's turn: payload buffers announced by INIT are allocated
    /// (ALLOC_PENDING → RECV_PAYLOAD; the model's heap never runs out).
    pub fn allocate(&mut self) {
        for r in &mut self.active {
            if r.state == RequestState::AllocPending {
                r.payload.reserve_exact(r.size);
                r.state = RequestState::RecvPayload;
            }
        }
    }

    /// The next request whose payload has arrived, for the owner to handle and then
    /// [`complete`](Self::complete).
    pub fn take_ready(&mut self) -> Option<Ready> {
        let r = self
            .active
            .iter_mut()
            .find(|r| r.state == RequestState::Pending && !r.taken)?;
        r.taken = true;
        Some(Ready {
            id: r.id,
            request_type: r.request_type,
            payload: core::mem::take(&mut r.payload),
        })
    }

    /// The owner's answer to request `id`: its result, reply payload and an optional hook to
    /// get back once the host has the final reply (or the request was cancelled). Ids that
    /// are not being handled are ignored.
    pub fn complete(&mut self, id: u16, result: i32, reply: Vec<u8>, hook: Option<H>) {
        if let Some(at) = self.detached.iter().position(|(d, _)| *d == id) {
            let (_, cancelled) = self.detached.swap_remove(at);
            if let Some(hook) = hook {
                self.completed.push_back(Completed {
                    hook,
                    result: cancelled,
                });
            }
            return;
        }
        let Some(i) = self.find(id) else {
            return;
        };
        let r = &mut self.active[i];
        if r.state != RequestState::Pending || !r.taken {
            return;
        }
        r.state = RequestState::Done;
        r.result = result;
        r.reply = reply;
        r.offset = 0;
        r.hook = hook;
    }

    /// The next completion hook whose request has ended.
    pub fn take_completed(&mut self) -> Option<Completed<H>> {
        self.completed.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{CHECK, INIT, RAW, RECV, RESET, SEND};

    type Ch = Channel<&'static str>;

    fn init(ch: &mut Ch, ty: u16, size: u16) -> Vec<u8> {
        ch.setup(&Setup::vendor_in(INIT, size, ty, 64), &[])
            .unwrap()
    }

    fn check(ch: &mut Ch, id: u16) -> Vec<u8> {
        ch.setup(&Setup::vendor_in(CHECK, 0, id, 64), &[]).unwrap()
    }

    #[test]
    fn init_replies_as_device_os_does() {
        let mut ch = Ch::new();
        // No payload: OK + id 1 (8 bytes), queued at once.
        assert_eq!(init(&mut ch, 90, 0), [3, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(ch.state(1), Some(RequestState::Pending));
        // ≤ 64 bytes: OK, waiting for SEND.
        assert_eq!(init(&mut ch, 250, 4), [3, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!(ch.state(2), Some(RequestState::RecvPayload));
        // > 64 bytes: PENDING while the buffer is allocated.
        assert_eq!(init(&mut ch, 253, 1027), [3, 0, 0, 0, 2, 0, 3, 0]);
        assert_eq!(check(&mut ch, 3), [1, 0, 0, 0, 2, 0]);
        ch.allocate();
        assert_eq!(check(&mut ch, 3), [1, 0, 0, 0, 0, 0], "buffer ready");
        init(&mut ch, 1, 0);
        // A fifth request: BUSY, 6 bytes, no id.
        assert_eq!(init(&mut ch, 1, 0), [1, 0, 0, 0, 3, 0]);
        assert_eq!(ch.active_count(), 4);
    }

    #[test]
    fn wrong_lengths_and_states_stall() {
        let mut ch = Ch::new();
        for length in [0, 63, 65] {
            assert_eq!(
                ch.setup(&Setup::vendor_in(INIT, 0, 90, length), &[]),
                Err(Stall)
            );
        }
        assert_eq!(ch.setup(&Setup::vendor_in(RAW, 0, 30, 64), &[]), Err(Stall));
        assert_eq!(ch.setup(&Setup::vendor_in(6, 0, 0, 64), &[]), Err(Stall));
        init(&mut ch, 250, 4);
        // SEND beyond the payload, to an unknown id, or empty.
        let send = |id, len| Setup::vendor_out(SEND, 0, id, len);
        assert_eq!(ch.setup(&send(1, 5), &[0; 5]), Err(Stall));
        assert_eq!(ch.setup(&send(9, 4), &[0; 4]), Err(Stall));
        assert_eq!(ch.setup(&send(1, 0), &[]), Err(Stall));
        assert_eq!(
            ch.setup(&send(1, 4), &[0; 3]),
            Err(Stall),
            "short data stage"
        );
        // RECV before DONE.
        assert_eq!(ch.setup(&Setup::vendor_in(RECV, 0, 1, 4), &[]), Err(Stall));
    }

    #[test]
    fn a_request_runs_to_its_end_and_its_hook_comes_back() {
        let mut ch = Ch::new();
        init(&mut ch, 1, 5);
        ch.setup(&Setup::vendor_out(SEND, 0, 1, 2), b"he").unwrap();
        assert_eq!(ch.take_ready(), None);
        ch.setup(&Setup::vendor_out(SEND, 0, 1, 3), b"llo").unwrap();
        let ready = ch.take_ready().unwrap();
        assert_eq!((ready.id, ready.payload.as_slice()), (1, &b"hello"[..]));
        assert_eq!(check(&mut ch, 1), [1, 0, 0, 0, 2, 0], "still being handled");
        ch.complete(1, 0, b"hello".to_vec(), Some("echoed"));
        // DONE with 5 bytes: flags 0x0D, size 5, result 0.
        assert_eq!(
            check(&mut ch, 1),
            [0x0D, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ch.take_completed(), None, "the reply is not read yet");
        let recv = |len| Setup::vendor_in(RECV, 0, 1, len);
        assert_eq!(ch.setup(&recv(6), &[]), Err(Stall));
        assert_eq!(ch.setup(&recv(3), &[]).unwrap(), b"hel");
        assert_eq!(ch.setup(&recv(2), &[]).unwrap(), b"lo");
        assert_eq!(
            ch.take_completed(),
            Some(Completed {
                hook: "echoed",
                result: 0
            })
        );
        assert_eq!(check(&mut ch, 1), [1, 0, 0, 0, 5, 0], "gone: NOT_FOUND");
    }

    #[test]
    fn done_without_reply_completes_on_the_check() {
        let mut ch = Ch::new();
        init(&mut ch, 50, 0);
        let r = ch.take_ready().unwrap();
        ch.complete(r.id, 0, Vec::new(), Some("dfu"));
        // DONE, no payload: flags 0x09, result 0, 10 bytes.
        assert_eq!(check(&mut ch, 1), [9, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ch.take_completed().unwrap().hook, "dfu");
        assert_eq!(check(&mut ch, 1), [1, 0, 0, 0, 5, 0]);
    }

    #[test]
    fn reset_cancels_and_hooks_see_it() {
        let mut ch = Ch::new();
        init(&mut ch, 40, 0);
        init(&mut ch, 41, 0);
        let first = ch.take_ready().unwrap();
        // RESET of an unknown id: NOT_FOUND; of a known id: OK.
        let reset = |id| Setup::vendor_in(RESET, 0, id, 64);
        assert_eq!(ch.setup(&reset(7), &[]).unwrap(), [1, 0, 0, 0, 5, 0]);
        assert_eq!(ch.setup(&reset(first.id), &[]).unwrap(), [1, 0, 0, 0, 0, 0]);
        // The owner finishes the cancelled request later: the hook sees −140.
        ch.complete(first.id, 0, Vec::new(), Some("reset"));
        assert_eq!(
            ch.take_completed(),
            Some(Completed {
                hook: "reset",
                result: -140
            })
        );
        // RESET 0 cancels everything.
        let second = ch.take_ready().unwrap();
        ch.complete(second.id, 0, Vec::new(), Some("factory"));
        assert_eq!(ch.setup(&reset(0), &[]).unwrap(), [1, 0, 0, 0, 0, 0]);
        assert_eq!(ch.active_count(), 0);
        assert_eq!(ch.take_completed().unwrap().result, -140);
        // A bus reset aborts with −150.
        init(&mut ch, 40, 0);
        let r = ch.take_ready().unwrap();
        ch.complete(r.id, 0, Vec::new(), Some("bus"));
        ch.bus_reset();
        assert_eq!(ch.take_completed().unwrap().result, -150);
    }
}
