//! USB faults during `modflash flash` over DFU, through the library's executor on a virtual
//! device whose control pipe misbehaves at one transfer (`SimLink::with_pipe_faults`): a stall,
//! a timeout after the device acted, a short answer, or the device gone from the bus for good.
//! The run must never report a success the device does not confirm, and the same command run
//! again (the device plugged in again; it kept its power) must finish with the app running and
//! the modules of an uninterrupted run. CI faults every `CI_STRIDE`-th transfer and each of the
//! last `CI_TAIL`; `every_transfer_of_every_dfu_path` (ignored) faults every one.

mod support;

use modflash::plan::Via;
use modflash::transport::sim::PipeFault;
use support::{
    modules, parallel, reference, transfers_of, update_path, update_paths, usb_fault, Path, Tally,
};

const FAULTS: [PipeFault; 4] = [
    PipeFault::Stall,
    PipeFault::Timeout,
    PipeFault::Short,
    PipeFault::Gone,
];
/// CI faults every `CI_STRIDE`-th control transfer of a path…
const CI_STRIDE: u64 = 97;
/// …and each of its last `CI_TAIL` (the last verify, leaving DFU mode, the read-back).
const CI_TAIL: u64 = 24;

/// Every fault at the chosen transfers of `path`; prints one line per fault.
fn sweep(path: &Path, stride: u64, tail: u64) -> Tally {
    let (plan, done, _) = reference(path);
    let end = modules(&done);
    let transfers = transfers_of(path, &plan);
    let mut at: Vec<u64> = (0..transfers).step_by(stride as usize).collect();
    at.extend(transfers.saturating_sub(tail)..transfers);
    at.sort_unstable();
    at.dedup();
    let mut total = Tally::default();
    for fault in FAULTS {
        let tally = parallel(&at, |n| usb_fault(path, &plan, &end, n, fault));
        println!(
            "{} {fault:?}: {transfers} transfers, {} faulted, {} reported as failed, {} done despite the fault (confirmed), {} completed by a re-run, {} false successes",
            path.name,
            tally.cuts,
            tally.cuts - tally.modes.get("done despite the fault").copied().unwrap_or(0),
            tally.modes.get("done despite the fault").copied().unwrap_or(0),
            tally.completed_by_rerun,
            tally.false_successes,
        );
        assert_eq!(tally.false_successes, 0);
        assert_eq!(tally.completed_by_rerun, tally.cuts);
        total.cuts += tally.cuts;
        total.completed_by_rerun += tally.completed_by_rerun;
    }
    total
}

#[test]
fn photon_dfu_parts_and_app() {
    sweep(&update_path("photon-dfu-parts-app"), CI_STRIDE, CI_TAIL);
}

#[test]
fn photon_dfu_bootloader_through_the_ota_flag() {
    sweep(
        &update_path("photon-dfu-bootloader-ota-flag"),
        CI_STRIDE,
        CI_TAIL,
    );
}

#[test]
fn argon_dfu_bootloader_through_the_mbr() {
    sweep(&update_path("argon-dfu-bootloader-mbr"), CI_STRIDE, CI_TAIL);
}

#[test]
fn argon_dfu_radio_stack() {
    sweep(&update_path("argon-dfu-radio-stack"), CI_STRIDE, CI_TAIL);
}

#[test]
fn electron_dfu_three_parts() {
    sweep(&update_path("electron-dfu-three-parts"), CI_STRIDE, CI_TAIL);
}

#[test]
fn p2_dfu_system_part() {
    sweep(&update_path("p2-dfu-system-part"), CI_STRIDE, CI_TAIL);
}

/// The full sweep recorded in `docs/TESTING.md`:
/// `cargo test --release -p modflash --test usb_faults -- --ignored --nocapture`.
#[test]
#[ignore = "every fault at every control transfer of every DFU path: about 13 minutes of CPU"]
fn every_transfer_of_every_dfu_path() {
    let started = std::time::Instant::now();
    let mut runs = 0;
    for path in update_paths() {
        if path.command.wanted.via == Some(Via::Dfu) {
            runs += sweep(&path, 1, 0).cuts;
        }
    }
    println!("{runs} faulted runs in {:.0?}", started.elapsed());
}
