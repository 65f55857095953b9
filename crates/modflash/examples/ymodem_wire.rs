//! YMODEM cost on the wire against the Device OS listening-mode receiver (the virtual
//! device's console, in-process): round trips, blocks and bytes for a system part, the
//! modflash scheme (1K blocks, real CRC-16, `SenderConfig::device_os()`) against the
//! particle-cli scheme (128-byte blocks, zero CRC, ACK each: `Scheme::ParticleCli`).
//!
//! `cargo run --release -p modflash-core --example ymodem_wire [FILE RELEASE]...`
//! (default: the 250 KB system-part1-0.5.2-photon.bin onto a 0.5.2 Photon and the 238 KB
//! photon-system-part1@1.5.0.bin onto a 0.7.0 Photon). Prints a Markdown table.

use std::path::PathBuf;

use modflash::progress::{Cancel, Quiet};
use modflash::transport::serial::{Console, Verdict};
use modflash::transport::sim::ConsoleLink;
use modflash_device::console::ConsoleConfig;
use modflash_device::Device;
use modflash_module::platform::platform;
use modflash_ymodem::{Scheme, SenderConfig, SenderStats};

/// Per-round-trip latency assumed for the time estimate: a USB full-speed CDC port answers
/// a block with its ACK one or two 1 ms frames later; hubs and some OS drivers add more.
const RTT_MS: [f64; 2] = [2.0, 8.0];

fn run(image: &[u8], release: &str, scheme: Scheme) -> Result<(SenderStats, u64), String> {
    let mut device =
        Device::blank(platform(6).ok_or("no Photon")?, [0x11; 12]).map_err(|e| e.to_string())?;
    device
        .install_release(release, true)
        .map_err(|e| e.to_string())?;
    device.power_on();
    let flash_before = device.flash_stats().modelled_us;
    let config = SenderConfig {
        scheme,
        ..SenderConfig::device_os()
    };
    let mut session = Console::new(ConsoleLink::new(
        &mut device,
        ConsoleConfig::device(),
        "sim",
    ));
    session.enter_listening().map_err(|e| e.to_string())?;
    let report = session
        .flash("binary", image, config, &mut Quiet, &Cancel::new())
        .map_err(|e| e.to_string())?;
    if !matches!(report.verdict, Verdict::Accepted { .. }) {
        return Err(format!(
            "the device did not accept it: {:?}",
            report.verdict
        ));
    }
    drop(session);
    let flash_ms = device
        .flash_stats()
        .modelled_us
        .saturating_sub(flash_before)
        / 1000;
    Ok((report.stats, flash_ms))
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/real");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<(PathBuf, String)> = if args.len() >= 2 {
        args.chunks(2)
            .map(|c| (PathBuf::from(&c[0]), c.get(1).cloned().unwrap_or_default()))
            .collect()
    } else {
        vec![
            (root.join("system-part1-0.5.2-photon.bin"), "0.5.2".into()),
            (root.join("photon-system-part1@1.5.0.bin"), "0.7.0".into()),
        ]
    };
    println!(
        "| file | scheme | blocks | round trips | bytes to device | bytes from device | overhead | est. time @ {} ms / {} ms RTT |",
        RTT_MS[0], RTT_MS[1]
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (path, release) in cases {
        let image = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                std::process::exit(2);
            }
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut trips = Vec::new();
        for (label, scheme) in [
            ("modflash (1K, CRC-16)", Scheme::Standard),
            ("particle-cli (128 B, zero CRC)", Scheme::ParticleCli),
        ] {
            match run(&image, &release, scheme) {
                Ok((s, _flash_ms)) => {
                    trips.push(s.round_trips);
                    let overhead = (s.wire_bytes_out as f64 / image.len() as f64 - 1.0) * 100.0;
                    // Serial bytes themselves are cheap on USB (12 Mbit/s); the round trips
                    // dominate.
                    let est = |rtt: f64| {
                        s.round_trips as f64 * rtt / 1000.0 + s.wire_bytes_out as f64 / 1_000_000.0
                    };
                    println!(
                        "| {name} ({} B, onto {release}) | {label} | {} | {} | {} | {} | {overhead:.1} % | {:.2} s / {:.2} s |",
                        image.len(),
                        s.blocks_sent,
                        s.round_trips,
                        s.wire_bytes_out,
                        s.wire_bytes_in,
                        est(RTT_MS[0]),
                        est(RTT_MS[1]),
                    );
                }
                Err(e) => {
                    eprintln!("{name} with {label}: {e}");
                    std::process::exit(1);
                }
            }
        }
        if let [ours, theirs] = trips[..] {
            println!(
                "| {name} | **ratio** | | **{:.1}× fewer** | | | | |",
                theirs as f64 / ours.max(1) as f64
            );
        }
    }
}
