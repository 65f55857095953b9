//! Fuzz the host side of Particle's control requests: `HostRequest` fed arbitrary device
//! replies never panics, asks only for transfers within the protocol's limits, and ends
//! (finished or failed) within a bounded number of transfers once replies stop being PENDING.
//!
//! Input: byte 0..2 = payload size, byte 2 = reply limit / 256, then replies, each a length
//! byte followed by that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_control::host::HostRequest;
use modflash_control::service::MAX_TRANSFER_CHUNK;
use modflash_control::RequestType;

fuzz_target!(|data: &[u8]| {
    let Some((head, mut rest)) = data.split_at_checked(3) else {
        return;
    };
    let payload = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let limit = usize::from(head[2]) * 256;
    let mut request = HostRequest::new(RequestType::ECHO, vec![0x5A; payload])
        .unwrap()
        .max_reply(limit);
    while let Some(transfer) = request.next() {
        assert!(usize::from(transfer.setup.length) <= MAX_TRANSFER_CHUNK.max(64));
        assert!(
            transfer.data.len() == usize::from(transfer.setup.length) || transfer.setup.is_in()
        );
        let Some((&n, tail)) = rest.split_first() else {
            let _ = request.abandon();
            break;
        };
        let n = usize::from(n).min(tail.len());
        let (reply, tail) = tail.split_at(n);
        rest = tail;
        // A RECV reply is as long as asked, or the request fails.
        let reply: Vec<u8> = if transfer.setup.request == 4 && reply.len() == 1 {
            vec![reply[0]; usize::from(transfer.setup.length)]
        } else {
            reply.to_vec()
        };
        if request.complete(&reply).is_err() {
            let _ = request.abandon();
            assert!(request.next().is_none());
        }
    }
    if let Some(Ok(response)) = request.outcome() {
        assert!(response.data.len() <= limit);
    }
});
