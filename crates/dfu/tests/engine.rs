//! Engine tests against a scripted transport and an honest DfuSe device model.

mod support;

use modflash_dfu::control::*;
use modflash_dfu::{
    Control, DfuSe, EraseMode, Error, LeaveOutcome, MemoryLayout, Operation, Options, Progress,
    Stage, State, Status,
};
use support::*;

const APP: u32 = 0x080A_0000;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn session<C: Control>(ctl: &mut C) -> DfuSe<'_, C> {
    DfuSe::new(ctl, 0, 0, 4096, photon_layout()).unwrap()
}

fn nop() -> impl FnMut(Progress) {
    |_| {}
}

// ------------------------------------------------------------------ exact traces (scripted)

#[test]
fn download_10000_bytes_exact_trace_and_counts() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .busy_then_idle()
        .set_address(APP)
        .busy_then_idle()
        .dnload(2, 4096, Reply::Out)
        .busy_then_idle()
        .dnload(3, 4096, Reply::Out)
        .busy_then_idle()
        .dnload(4, 1808, Reply::Out)
        .busy_then_idle()
        // leave
        .set_address(APP)
        .busy_then_idle()
        .dnload(2, 0, Reply::Out)
        .status(State::DnloadIdle, Status::Ok, 0);
    let mut events = Vec::new();
    let mut d = session(&mut s);
    d.download(APP, &data(10_000, 1), &mut |p| events.push(p))
        .unwrap();
    assert_eq!(
        d.leave(APP).unwrap(),
        LeaveOutcome::Manifesting(State::DnloadIdle)
    );
    let c = d.counters();
    assert_eq!(c.control_transfers(), 21);
    assert_eq!(
        (c.get_status, c.set_address, c.erase, c.download, c.leave),
        (14, 2, 1, 3, 1)
    );
    assert_eq!((c.abort, c.clear_status, c.upload), (0, 0, 0));
    s.assert_done();
    assert!(s.waits.is_empty());
    assert_eq!(
        events,
        vec![
            Progress::EraseStarted {
                pages: 1,
                total_bytes: 131072
            },
            Progress::Erased {
                address: APP,
                bytes: 131072
            },
            Progress::WriteStarted {
                address: APP,
                total_bytes: 10000
            },
            Progress::Written {
                address: APP,
                bytes_done: 4096,
                total_bytes: 10000
            },
            Progress::Written {
                address: APP + 4096,
                bytes_done: 8192,
                total_bytes: 10000
            },
            Progress::Written {
                address: APP + 8192,
                bytes_done: 10000,
                total_bytes: 10000
            },
            Progress::Done,
        ]
    );
}

#[test]
fn upload_10000_bytes_exact_trace_short_final_block() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .set_address(APP)
        .busy_then_idle()
        .simple_out(DFU_ABORT, 0, Reply::Out)
        .upload(2, 4096, Reply::In(vec![1; 4096]))
        .upload(3, 4096, Reply::In(vec![2; 4096]))
        .upload(4, 1808, Reply::In(vec![3; 1808]))
        .simple_out(DFU_ABORT, 0, Reply::Out);
    let mut d = session(&mut s);
    let got = d.upload(APP, 10_000, &mut nop()).unwrap();
    assert_eq!(got.len(), 10_000);
    assert_eq!((got[0], got[4096], got[9999]), (1, 2, 3));
    assert_eq!(d.counters().control_transfers(), 9);
    s.assert_done();
}

#[test]
fn upload_device_sending_less_than_asked_is_an_error() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .set_address(APP)
        .busy_then_idle()
        .simple_out(DFU_ABORT, 0, Reply::Out)
        .upload(2, 4096, Reply::In(vec![1; 4096]))
        .upload(3, 4096, Reply::In(vec![2; 100]));
    let err = session(&mut s).upload(APP, 10_000, &mut nop()).unwrap_err();
    assert_eq!(
        err,
        Error::UploadShort {
            address: APP + 4096,
            requested: 4096,
            received: 100
        }
    );
    assert!(
        err.to_string().contains("upload ended early at 0x080A1000"),
        "{err}"
    );
}

#[test]
fn stall_on_getstatus_after_write_is_a_refusal() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .set_address(APP)
        .busy_then_idle()
        .dnload(2, 4096, Reply::Out)
        .status(State::DnBusy, Status::Ok, 0)
        .status_reply(Reply::Stall);
    let err = session(&mut s)
        .download_with(APP, &data(5000, 0), EraseMode::Skip, &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Refused {
            during: Operation::Write {
                address: APP,
                block: 2
            },
            stage: Stage::StatusPoll
        }
    );
    let msg = err.to_string();
    assert!(msg.starts_with("the device refused to write at 0x080A0000 (block 2) (it stalled on the GETSTATUS that followed)"), "{msg}");
    s.assert_done();
}

#[test]
fn short_status_record_is_an_error() {
    let mut s = Script::new().status_reply(Reply::In(vec![0, 0, 0, 0]));
    let err = session(&mut s)
        .download(APP, &[1, 2, 3], &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::ShortReply {
            during: Operation::GetStatus,
            expected: 6,
            got: 4
        }
    );

    // Short record in the middle of a poll names the command.
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .status_reply(Reply::In(vec![0, 0, 0, 0, 4]));
    let err = session(&mut s)
        .download(APP, &[1, 2, 3], &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::ShortReply {
            during: Operation::Erase { address: APP },
            expected: 6,
            got: 5
        }
    );
    assert_eq!(
        err.to_string(),
        "short reply to ERASE 0x080A0000: got 5 of 6 bytes"
    );
}

#[test]
fn timeouts_and_transport_errors_name_the_operation() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .busy_then_idle()
        .set_address(APP)
        .busy_then_idle()
        .dnload(2, 4096, Reply::Timeout);
    let err = session(&mut s)
        .download(APP, &data(8192, 0), &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Timeout {
            during: Operation::Write {
                address: APP,
                block: 2
            }
        }
    );
    assert!(err
        .to_string()
        .contains("timed out during DNLOAD block 2 at 0x080A0000"));

    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .status_reply(Reply::Other("EIO"));
    let err = session(&mut s).download(APP, &[0], &mut nop()).unwrap_err();
    assert!(matches!(
        err,
        Error::Transfer {
            during: Operation::Erase { .. },
            ..
        }
    ));
    assert!(err.to_string().contains("EIO"));

    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .busy_then_idle()
        .set_address(APP)
        .busy_then_idle()
        .dnload(2, 3, Reply::OutShort(2));
    let err = session(&mut s)
        .download(APP, &[1, 2, 3], &mut nop())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShortWrite {
                sent: 3,
                accepted: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn poll_timeouts_are_waited_exactly() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 77) // stale timeout on an idle reply: no wait
        .erase(APP)
        .status(State::DnBusy, Status::Ok, 1500)
        .status(State::DnBusy, Status::Ok, 250)
        .status(State::DnloadIdle, Status::Ok, 99)
        .set_address(APP)
        .status(State::DnBusy, Status::Ok, 0)
        .status(State::DnloadIdle, Status::Ok, 0)
        .dnload(2, 10, Reply::Out)
        .status(State::DnBusy, Status::Ok, 0x01_0000) // 24-bit value: 65536 ms
        .status(State::DnloadIdle, Status::Ok, 0);
    let mut d = session(&mut s);
    d.download(APP, &[0; 10], &mut nop()).unwrap();
    assert_eq!(d.counters().waited_ms, 1500 + 250 + 65536);
    s.assert_done();
    assert_eq!(s.waits, vec![1500, 250, 65536]);
}

#[test]
fn busy_forever_is_bounded() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP);
    for _ in 0..5 {
        s = s.status(State::DnBusy, Status::Ok, 10);
    }
    let opts = Options {
        max_busy_polls: 5,
        ..Options::default()
    };
    let err = session(&mut s)
        .with_options(opts)
        .unwrap()
        .download(APP, &[1], &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::StuckBusy {
            during: Operation::Erase { address: APP },
            polls: 5,
            waited_ms: 40
        }
    );
    s.assert_done();

    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .status(State::DnBusy, Status::Ok, 0xFF_FFFF);
    let err = session(&mut s).download(APP, &[1], &mut nop()).unwrap_err();
    assert!(matches!(err, Error::StuckBusy { polls: 1, .. }), "{err:?}");
    assert!(s.waits.is_empty(), "must not sleep 4.6 hours");
}

#[test]
fn wrong_state_after_command_is_an_error() {
    let mut s = Script::new()
        .status(State::DfuIdle, Status::Ok, 0)
        .erase(APP)
        .status(State::DfuIdle, Status::Ok, 0);
    let err = session(&mut s).download(APP, &[1], &mut nop()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedState {
                state: State::DfuIdle,
                during: Operation::Erase { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn device_in_runtime_mode_is_reported() {
    let mut s = Script::new().status(State::AppIdle, Status::Ok, 0);
    let err = session(&mut s).download(APP, &[1], &mut nop()).unwrap_err();
    assert!(matches!(
        err,
        Error::RuntimeMode {
            state: State::AppIdle,
            ..
        }
    ));
    assert!(err.to_string().contains("detach it into DFU mode first"));
}

#[test]
fn abort_to_idle_uses_clrstatus_only_in_dfu_error() {
    let mut s = Script::new()
        .status(State::Error, Status::ErrAddress, 0)
        .simple_out(DFU_CLRSTATUS, 0, Reply::Out)
        .status(State::DfuIdle, Status::Ok, 0);
    session(&mut s).abort_to_idle().unwrap();
    s.assert_done();

    let mut s = Script::new()
        .status(State::UploadIdle, Status::Ok, 0)
        .simple_out(DFU_ABORT, 0, Reply::Out)
        .status(State::DfuIdle, Status::Ok, 0);
    session(&mut s).abort_to_idle().unwrap();
    s.assert_done();

    // Busy: wait, then poll again.
    let mut s = Script::new()
        .status(State::DnBusy, Status::Ok, 30)
        .status(State::DnloadIdle, Status::Ok, 0)
        .simple_out(DFU_ABORT, 0, Reply::Out)
        .status(State::DfuIdle, Status::Ok, 0);
    session(&mut s).abort_to_idle().unwrap();
    assert_eq!(s.waits, vec![30]);
    s.assert_done();

    // A device that never leaves dfuERROR.
    let mut s = Script::new();
    for _ in 0..2 {
        s = s
            .status(State::Error, Status::ErrUnknown, 0)
            .simple_out(DFU_CLRSTATUS, 0, Reply::Out);
    }
    s = s.status(State::Error, Status::ErrUnknown, 0);
    let err = session(&mut s).abort_to_idle().unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedState {
                state: State::Error,
                ..
            }
        ),
        "{err:?}"
    );
    s.assert_done();
}

#[test]
fn leave_outcomes() {
    let prefix = || {
        Script::new()
            .status(State::DfuIdle, Status::Ok, 0)
            .set_address(APP)
            .busy_then_idle()
    };

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status(State::Manifest, Status::Ok, 0);
    assert_eq!(
        session(&mut s).leave(APP).unwrap(),
        LeaveOutcome::Manifesting(State::Manifest)
    );

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status(State::ManifestWaitReset, Status::Ok, 0);
    assert_eq!(
        session(&mut s).leave(APP).unwrap(),
        LeaveOutcome::Manifesting(State::ManifestWaitReset)
    );

    let mut s = prefix().dnload(2, 0, Reply::NoDevice);
    assert_eq!(
        session(&mut s).leave(APP).unwrap(),
        LeaveOutcome::Disconnected
    );

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status_reply(Reply::NoDevice);
    assert_eq!(
        session(&mut s).leave(APP).unwrap(),
        LeaveOutcome::Disconnected
    );

    let mut s = prefix().dnload(2, 0, Reply::Out).status_reply(Reply::Stall);
    assert_eq!(
        session(&mut s).leave(APP).unwrap(),
        LeaveOutcome::Disconnected
    );

    // Failures.
    let mut s = prefix().dnload(2, 0, Reply::Stall);
    let err = session(&mut s).leave(APP).unwrap_err();
    assert_eq!(
        err,
        Error::Refused {
            during: Operation::Leave { address: APP },
            stage: Stage::Request
        }
    );

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status(State::DfuIdle, Status::Ok, 0);
    assert!(matches!(
        session(&mut s).leave(APP).unwrap_err(),
        Error::UnexpectedState {
            state: State::DfuIdle,
            ..
        }
    ));

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status(State::Error, Status::ErrFirmware, 0);
    let err = session(&mut s).leave(APP).unwrap_err();
    assert_eq!(err.to_string(), "device is in dfuERROR with errFIRMWARE after leave request (zero-length DNLOAD) for 0x080A0000: the firmware is corrupt and cannot run; download it again");

    let mut s = prefix()
        .dnload(2, 0, Reply::Out)
        .status_reply(Reply::Timeout);
    assert!(matches!(
        session(&mut s).leave(APP).unwrap_err(),
        Error::Timeout { .. }
    ));
}

#[test]
fn detach_sends_wtimeout() {
    let mut s = Script::new().simple_out(DFU_DETACH, 1000, Reply::Out);
    session(&mut s).detach(1000).unwrap();
    s.assert_done();
    let mut s = Script::new().simple_out(DFU_DETACH, 1000, Reply::NoDevice);
    modflash_dfu::detach(&mut s, 0, 1000, 5000).unwrap();
    let mut s = Script::new().simple_out(DFU_DETACH, 500, Reply::Stall);
    assert_eq!(
        modflash_dfu::detach(&mut s, 0, 500, 5000).unwrap_err(),
        Error::Refused {
            during: Operation::Detach,
            stage: Stage::Request
        }
    );
}

#[test]
fn zero_byte_download_sends_nothing() {
    let mut s = Script::new();
    let mut events = Vec::new();
    let mut d = session(&mut s);
    d.download(0x0800_0000, &[], &mut |p| events.push(p))
        .unwrap();
    assert_eq!(d.counters().control_transfers(), 0);
    assert_eq!(events, vec![Progress::Done]);
    assert!(d.upload(APP, 0, &mut nop()).unwrap().is_empty());
}

#[test]
fn layout_violations_are_refused_before_any_transfer() {
    let mut s = Script::new(); // any transfer would panic the script
    let mut d = session(&mut s);
    let err = d.download(0x0800_0000, &[1; 16], &mut nop()).unwrap_err();
    assert_eq!(err.to_string(), "refusing to write 0x08000000: segment 0x08000000..0x0800C000 is r in the layout, not writable; nothing was sent to the device");
    // Starting in a writable segment and running into nothing.
    let err = d.download(0x080F_FFF0, &[1; 32], &mut nop()).unwrap_err();
    assert_eq!(
        err,
        Error::NotInLayout {
            address: 0x0810_0000,
            layout: "Internal Flash   ".into()
        }
    );
    // Ending in the read-only part.
    let err = d.download(0x0800_BFF0, &[1; 32], &mut nop()).unwrap_err();
    assert!(matches!(
        err,
        Error::NotWritable {
            address: 0x0800_BFF0,
            ..
        }
    ));
    let err = d.download(0xFFFF_FFF0, &[1; 32], &mut nop()).unwrap_err();
    assert!(matches!(err, Error::RangeOverflow { .. }));
    let err = d.upload(0x0900_0000, 4, &mut nop()).unwrap_err();
    assert!(matches!(err, Error::NotInLayout { .. }));
    assert_eq!(d.counters().control_transfers(), 0);

    let wo = MemoryLayout::parse("@X/0x20000000/4*1Kd").unwrap();
    let mut d = DfuSe::new(&mut s, 0, 0, 64, wo).unwrap();
    assert!(matches!(
        d.upload(0x2000_0000, 4, &mut nop()).unwrap_err(),
        Error::NotReadable { .. }
    ));
}

// ------------------------------------------------------------------ device model

#[test]
fn particle_model_download_verify_leave_end_to_end() {
    let mut m = Model::photon(Quirks::particle());
    let app = data(10_000, 7);
    let mut d = session(&mut m);
    d.download(APP, &app, &mut nop()).unwrap();
    let written = d.counters();
    d.verify(APP, &app, &mut nop()).unwrap();
    assert_eq!(
        d.leave(APP).unwrap(),
        LeaveOutcome::Manifesting(State::DnloadIdle)
    );
    assert_eq!(written.control_transfers(), 16);
    assert_eq!(m.read(APP, 10_000), &app[..]);
    // The rest of the erased sector is blank; the next sector is untouched.
    assert!(m
        .read(APP + 10_000, 0x2_0000 - 10_000)
        .iter()
        .all(|&b| b == 0xFF));
    assert_ne!(m.read(0x080C_0000, 16), &[0xFF; 16]);
    assert_eq!(m.left_at, Some(APP));
    assert_eq!(m.erased, vec![APP]);
    assert_eq!(m.impatient, 0);
}

#[test]
fn st_model_leave_reports_manifest_and_mass_erase_works_on_request() {
    let mut m = Model::photon(Quirks::st());
    let mut d = session(&mut m);
    d.mass_erase().unwrap();
    d.download_with(APP, &[1, 2, 3, 4], EraseMode::Skip, &mut nop())
        .unwrap();
    d.verify(APP, &[1, 2, 3, 4], &mut nop()).unwrap();
    assert_eq!(
        d.leave(APP).unwrap(),
        LeaveOutcome::Manifesting(State::Manifest)
    );
    assert_eq!(m.commands()[0], (0x41, None));
}

#[test]
fn mass_erase_only_on_request_and_refused_by_particle() {
    let mut m = Model::photon(Quirks::particle());
    let mut d = session(&mut m);
    d.download(APP, &data(300_000, 1), &mut nop()).unwrap();
    let err = d.mass_erase().unwrap_err();
    assert_eq!(
        err,
        Error::Refused {
            during: Operation::MassErase,
            stage: Stage::StatusPoll
        }
    );
    assert!(err.to_string().contains("Particle's does not"), "{err}");
    let cmds = m.commands();
    assert_eq!(
        cmds.iter().filter(|c| c.1.is_none()).count(),
        1,
        "only the requested mass erase"
    );
}

#[test]
fn particle_protected_area_write_stalls_and_is_reported() {
    // The layout says 0x0800C000 is writable; the bootloader refuses below 0x08020000.
    let mut m = Model::photon(Quirks::particle());
    let err = session(&mut m)
        .download(0x0800_C000, &[1; 10], &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Refused {
            during: Operation::Erase {
                address: 0x0800_C000
            },
            stage: Stage::StatusPoll
        }
    );
    assert!(err
        .to_string()
        .starts_with("the device refused to erase the page at 0x0800C000 (it stalled"));

    let mut m = Model::photon(Quirks::particle());
    let err = session(&mut m)
        .download_with(0x0800_C000, &[1; 10], EraseMode::Skip, &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Refused {
            during: Operation::Write {
                address: 0x0800_C000,
                block: 2
            },
            stage: Stage::StatusPoll
        }
    );
    assert_eq!(m.read(0x0800_C000, 1), &[0x5A]);
}

#[test]
fn st_model_reports_err_address_via_dfu_error() {
    let mut m = Model::photon(Quirks::st());
    let err = session(&mut m)
        .download_with(0x0800_C000, &[1; 10], EraseMode::Skip, &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::DeviceStatus {
            during: Operation::Write {
                address: 0x0800_C000,
                block: 2
            },
            status: Status::ErrAddress,
            state: State::Error
        }
    );
    assert_eq!(err.to_string(), "device is in dfuERROR with errADDRESS after DNLOAD block 2 at 0x0800C000: the address is read-only or out of range on this device");
    // The next operation recovers from dfuERROR with CLRSTATUS.
    let mut d = session(&mut m);
    d.download(APP, &[9; 3], &mut nop()).unwrap();
    assert_eq!(d.counters().clear_status, 1);
}

#[test]
fn st_model_reports_err_write_with_the_block_address() {
    let mut m = Model::photon(Quirks::st());
    m.write_fail = Some((APP + 5000, APP + 5001));
    let err = session(&mut m)
        .download(APP, &data(10_000, 3), &mut nop())
        .unwrap_err();
    assert_eq!(
        err,
        Error::DeviceStatus {
            during: Operation::Write {
                address: APP + 4096,
                block: 3
            },
            status: Status::ErrWrite,
            state: State::Error
        }
    );
    assert!(err
        .to_string()
        .contains("errWRITE after DNLOAD block 3 at 0x080A1000"));
}

#[test]
fn device_gone_mid_transfer() {
    let mut m = Model::photon(Quirks::particle());
    m.unplug_after = Some(12); // during the write pass
    let err = session(&mut m)
        .download(APP, &data(20_000, 3), &mut nop())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disconnected {
                during: Operation::Write { .. }
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("disappeared"));
}

#[test]
fn model_poll_timeouts_are_honoured() {
    let mut q = Quirks::st();
    q.erase_poll_ms = 500;
    q.write_poll_ms = 3;
    q.command_poll_ms = 1;
    q.extra_busy_polls = 1;
    let mut m = Model::photon(q);
    session(&mut m)
        .download(APP, &data(5000, 1), &mut nop())
        .unwrap();
    assert_eq!(m.impatient, 0);
    // erase 500 twice (extra busy poll), set address 1 twice, two blocks 3 twice each.
    assert_eq!(m.waits, vec![500, 500, 1, 1, 3, 3, 3, 3]);
}

#[test]
fn erase_only_touched_sectors_across_boundaries() {
    // 0x0800FF00..0x08010100 spans the 16K sector at 0x0800C000 and the 64K one at 0x08010000.
    let mut m = Model::photon(Quirks::st());
    m.protected_below = 0x0800_0000;
    let buf = data(0x200, 9);
    let mut d = session(&mut m);
    d.download(0x0800_FF00, &buf, &mut nop()).unwrap();
    d.verify(0x0800_FF00, &buf, &mut nop()).unwrap();
    let erases: Vec<_> = m
        .commands()
        .into_iter()
        .filter(|c| c.0 == 0x41)
        .map(|c| c.1)
        .collect();
    assert_eq!(erases, vec![Some(0x0800_C000), Some(0x0801_0000)]);

    // 64K into 128K sector, 3 sectors, each erased once and in order.
    let mut m = Model::photon(Quirks::particle());
    let buf = data(0x4_0000, 2);
    session(&mut m)
        .download(0x0802_0000, &buf, &mut nop())
        .unwrap();
    assert_eq!(m.erased, vec![0x0802_0000, 0x0804_0000]);
    let mut m = Model::photon(Quirks::particle());
    session(&mut m)
        .download(0x0803_FFFF, &[1, 2], &mut nop())
        .unwrap();
    assert_eq!(m.erased, vec![0x0802_0000, 0x0804_0000]);
    assert_eq!(m.read(0x0803_FFFF, 2), &[1, 2]);
}

#[test]
fn set_address_once_per_run() {
    let mut m = Model::photon(Quirks::particle());
    let buf = data(65_536 + 10, 4);
    let mut d = session(&mut m);
    d.download(APP, &buf, &mut nop()).unwrap();
    let c = d.counters();
    assert_eq!((c.set_address, c.download, c.erase), (1, 17, 1));
    let blocks: Vec<u16> = m
        .log
        .iter()
        .filter(|(s, d)| s.request == DFU_DNLOAD && s.value >= 2 && !d.is_empty())
        .map(|(s, _)| s.value)
        .collect();
    assert_eq!(blocks, (2..=18).collect::<Vec<_>>());
    assert_eq!(m.read(APP, buf.len()), &buf[..]);
}

#[test]
fn chunk_size_override_falls_back_to_set_address_per_block() {
    let mut m = Model::photon(Quirks::particle());
    let buf = data(5000, 4);
    let opts = Options {
        chunk_size: Some(1024),
        ..Options::default()
    };
    let mut d = session(&mut m).with_options(opts).unwrap();
    d.download(APP, &buf, &mut nop()).unwrap();
    d.verify(APP, &buf, &mut nop()).unwrap();
    assert_eq!(m.read(APP, 5000), &buf[..]);
    let sets: Vec<_> = m
        .commands()
        .into_iter()
        .filter(|c| c.0 == 0x21)
        .map(|c| c.1.unwrap())
        .collect();
    assert_eq!(
        &sets[..5],
        &[APP, APP + 1024, APP + 2048, APP + 3072, APP + 4096]
    );
}

#[test]
fn unaligned_address() {
    let mut m = Model::photon(Quirks::particle());
    let buf = data(5000, 5);
    let mut d = session(&mut m);
    d.download(APP + 3, &buf, &mut nop()).unwrap();
    d.verify(APP + 3, &buf, &mut nop()).unwrap();
    assert_eq!(m.read(APP, 3), &[0xFF; 3]);
    assert_eq!(m.read(APP + 3, 5000), &buf[..]);
    let cmds = m.commands();
    assert_eq!(cmds[0], (0x41, Some(APP)));
    assert_eq!(cmds[1], (0x21, Some(APP + 3)));
}

#[test]
fn wvalue_overflow_starts_a_new_run() {
    // Transfer size 1: 65534 blocks (wValue 2..=65535) fit in one run.
    let layout = MemoryLayout::parse("@RAM/0x20000000/128*1Kf").unwrap();
    let mut m = Model::flat(0x2000_0000, 128, 1024, 1, Quirks::particle());
    let buf = data(65_540, 6);
    let mut d = DfuSe::new(&mut m, 0, 0, 1, layout).unwrap();
    d.download(0x2000_0000, &buf, &mut nop()).unwrap();
    let c = d.counters();
    assert_eq!((c.set_address, c.download), (2, 65_540));
    let sets: Vec<_> = m
        .commands()
        .into_iter()
        .filter(|c| c.0 == 0x21)
        .map(|c| c.1.unwrap())
        .collect();
    assert_eq!(sets, vec![0x2000_0000, 0x2000_0000 + 65_534]);
    assert!(m
        .log
        .iter()
        .all(|(s, _)| s.request != DFU_DNLOAD || s.value != 1));
    assert_eq!(m.read(0x2000_0000, buf.len()), &buf[..]);
}

#[test]
fn writable_but_not_erasable_segment_is_written_without_erase() {
    let layout = MemoryLayout::parse("@RAM/0x20000000/4*1Ke").unwrap(); // rw, not erasable
    let mut m = Model::flat(0x2000_0000, 4, 1024, 256, Quirks::st());
    let mut d = DfuSe::new(&mut m, 0, 0, 256, layout).unwrap();
    d.download(0x2000_0100, &[0; 700], &mut nop()).unwrap();
    assert_eq!(d.counters().erase, 0);
    assert!(m.commands().iter().all(|c| c.0 != 0x41));
}

#[test]
fn verify_reports_first_mismatch() {
    let mut m = Model::photon(Quirks::particle());
    let buf = data(9000, 8);
    session(&mut m).download(APP, &buf, &mut nop()).unwrap();
    m.flash[(APP + 4100 - 0x0800_0000) as usize] ^= 0x10;
    m.flash[(APP + 8000 - 0x0800_0000) as usize] ^= 0x10;
    let err = session(&mut m).verify(APP, &buf, &mut nop()).unwrap_err();
    assert_eq!(
        err,
        Error::Verify {
            address: APP + 4100,
            expected: buf[4100],
            actual: buf[4100] ^ 0x10
        }
    );
}

#[test]
fn write_without_erase_is_caught_by_verify() {
    let mut m = Model::photon(Quirks::particle());
    let buf = data(100, 8);
    let mut d = session(&mut m);
    d.download_with(APP, &buf, EraseMode::Skip, &mut nop())
        .unwrap();
    assert!(matches!(
        d.verify(APP, &buf, &mut nop()).unwrap_err(),
        Error::Verify { .. }
    ));
}

#[test]
fn recovers_when_device_starts_in_dfu_error_or_upload_idle() {
    let mut m = Model::photon(Quirks::particle());
    m.state = State::Error;
    m.status = Status::ErrStalledPkt;
    session(&mut m).download(APP, &[1, 2], &mut nop()).unwrap();
    assert_eq!(m.count(DFU_CLRSTATUS, false), 1);

    let mut m = Model::photon(Quirks::particle());
    m.state = State::UploadIdle;
    session(&mut m).download(APP, &[1, 2], &mut nop()).unwrap();
    // Particle enters dfuERROR on a CLRSTATUS outside dfuERROR: never sent here.
    assert_eq!(m.count(DFU_CLRSTATUS, false), 0);
    assert_eq!(m.count(DFU_ABORT, false), 1);
}

#[test]
fn dct_alt_waits_500_ms_after_erase() {
    let layout = MemoryLayout::parse(DCT_LAYOUT).unwrap();
    let mut q = Quirks::particle();
    q.erase_poll_ms = 500;
    q.write_poll_ms = 1;
    let mut m = Model::flat(0, 1, 16 * 1024, 4096, q);
    let mut d = DfuSe::new(&mut m, 0, 1, 4096, layout).unwrap();
    d.download(1762, &[0xAB; 64], &mut nop()).unwrap();
    assert_eq!(m.waits, vec![500, 1]);
    assert_eq!(m.read(1762, 64), &[0xAB; 64]);
    assert_eq!(m.impatient, 0);
}

#[test]
fn get_commands_lists_supported_commands() {
    let mut m = Model::photon(Quirks::particle());
    assert_eq!(
        session(&mut m).get_commands().unwrap(),
        vec![0x00, 0x21, 0x41]
    );
    let mut m = Model::photon(Quirks::st());
    assert_eq!(
        session(&mut m).get_commands().unwrap(),
        vec![0x00, 0x21, 0x41, 0x92]
    );
}

#[test]
fn read_unprotect_only_on_request() {
    let mut m = Model::photon(Quirks::st());
    session(&mut m).read_unprotect().unwrap();
    assert!(m.gone);
    assert_eq!(m.commands(), vec![(0x92, None)]);
}

#[test]
fn descriptor_helpers_over_control() {
    use modflash_dfu::descriptor::read_string;
    let s = Script::new()
        .step(
            Setup {
                request_type: 0x80,
                request: 6,
                value: 0x0300,
                index: 0,
                length: 255,
            },
            None,
            Reply::In(vec![4, 3, 0x09, 0x04]),
        )
        .step(
            Setup {
                request_type: 0x80,
                request: 6,
                value: 0x0306,
                index: 0x0409,
                length: 255,
            },
            None,
            Reply::In({
                let mut v = vec![0, 3];
                for u in PHOTON_LAYOUT.encode_utf16() {
                    v.extend(u.to_le_bytes());
                }
                v[0] = v.len() as u8;
                v
            }),
        );
    let mut s = s;
    let name = read_string(&mut s, 6).unwrap();
    assert_eq!(name, PHOTON_LAYOUT);
    assert_eq!(
        MemoryLayout::parse(&name).unwrap().to_string(),
        PHOTON_LAYOUT
    );
    s.assert_done();
}

#[test]
fn invalid_parameters_are_rejected() {
    let mut s = Script::new();
    assert!(DfuSe::new(&mut s, 0, 0, 0, photon_layout()).is_err());
    let too_big = Options {
        chunk_size: Some(8192),
        ..Options::default()
    };
    assert!(session(&mut s).with_options(too_big).is_err());
    let zero = Options {
        chunk_size: Some(0),
        ..Options::default()
    };
    assert!(session(&mut s).with_options(zero).is_err());
}
