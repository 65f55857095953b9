//! Property tests of the two state machines: the device channel never panics, never holds more
//! than four requests and frees what it finishes, whatever the host sends; the host machine
//! never panics on any reply; and the two agree on every request a well-behaved host makes.

use modflash_control::channel::Channel;
use modflash_control::host::HostRequest;
use modflash_control::service::{MAX_ACTIVE_REQUESTS, MAX_PAYLOAD};
use modflash_control::{RequestType, Setup};
use proptest::prelude::*;

/// A device owner that echoes payloads (capped) and completes every request at once.
fn run_owner(ch: &mut Channel<u16>) {
    ch.allocate();
    while let Some(ready) = ch.take_ready() {
        let mut reply = ready.payload;
        reply.truncate(300);
        ch.complete(
            ready.id,
            -(i32::from(ready.request_type.0)),
            reply,
            Some(ready.id),
        );
    }
    while ch.take_completed().is_some() {}
}

fn any_setup() -> impl Strategy<Value = (Setup, Vec<u8>)> {
    (
        prop_oneof![Just(0xC0u8), Just(0x40), any::<u8>()],
        prop_oneof![1u8..=5, any::<u8>()],
        any::<u16>(),
        prop_oneof![0u16..6, any::<u16>()],
        prop_oneof![Just(64u16), 0u16..300, any::<u16>()],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(request_type, request, value, index, length, data)| {
            (
                Setup {
                    request_type,
                    request,
                    value: value % 400,
                    index,
                    length,
                },
                data,
            )
        })
}

proptest! {
    #[test]
    fn the_channel_stays_bounded_on_any_sequence(
        transfers in proptest::collection::vec(any_setup(), 0..200)
    ) {
        let mut ch = Channel::new();
        for (setup, data) in transfers {
            if let Ok(reply) = ch.setup(&setup, &data) {
                prop_assert!(reply.len() <= usize::from(setup.length).max(14));
            }
            run_owner(&mut ch);
            prop_assert!(ch.active_count() <= MAX_ACTIVE_REQUESTS);
        }
    }

    #[test]
    fn the_host_machine_never_panics_on_any_reply(
        payload_len in 0usize..9000,
        replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..60),
    ) {
        let mut r = HostRequest::new(RequestType::ECHO, vec![0; payload_len]).unwrap();
        for reply in replies {
            if r.next().is_none() {
                break;
            }
            if r.complete(&reply).is_err() {
                let _ = r.abandon();
                prop_assert!(r.next().is_none());
                break;
            }
        }
    }

    #[test]
    fn host_and_channel_agree(
        payload in proptest::collection::vec(any::<u8>(), 0..10_000),
        request_type in 1u16..1000,
    ) {
        let mut ch: Channel<u16> = Channel::new();
        let response = HostRequest::new(RequestType(request_type), payload.clone())
            .unwrap()
            .drive(|t| {
                let reply = ch.setup(&t.setup, t.data);
                run_owner(&mut ch);
                reply
            })
            .unwrap();
        prop_assert_eq!(response.result, -i32::from(request_type));
        prop_assert_eq!(&response.data[..], &payload[..payload.len().min(300)]);
        prop_assert_eq!(ch.active_count(), 0, "the request was freed");
    }
}

#[test]
fn four_requests_at_most_then_busy() {
    let mut ch: Channel<u16> = Channel::new();
    let mut ids = Vec::new();
    for _ in 0..MAX_ACTIVE_REQUESTS {
        let mut r = HostRequest::new(RequestType::ECHO, vec![1; MAX_PAYLOAD]).unwrap();
        let init = r.next().unwrap().setup;
        r.complete(&ch.setup(&init, &[]).unwrap()).unwrap();
        ids.push(r.id().unwrap());
    }
    assert_eq!(ids, [1, 2, 3, 4]);
    let mut fifth = HostRequest::new(RequestType::ECHO, vec![]).unwrap();
    let init = fifth.next().unwrap().setup;
    assert_eq!(
        fifth.complete(&ch.setup(&init, &[]).unwrap()),
        Err(modflash_control::host::HostError::Busy)
    );
}
