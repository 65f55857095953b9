//! Simulated boots per second, and wall time against modelled device time for a full system
//! update (bootloader, system part 1, system part 2 of 1.5.0 over OTA onto a 0.7.0 Photon).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use modflash_device::{Device, ResetReason};
use modflash_module::platform::platform;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../tests/fixtures/real/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn photon(release: &str) -> Device {
    let mut d = Device::blank(platform(6).unwrap(), [1; 12]).unwrap();
    d.install_release(release, true).unwrap();
    d.power_on();
    d
}

fn update(d: &mut Device, files: &[Vec<u8>]) {
    for f in files {
        d.ota_begin(f.len()).unwrap();
        d.ota_write(0, f).unwrap();
        d.ota_finish().unwrap();
        d.reset(ResetReason::Update, None);
    }
}

fn benches(c: &mut Criterion) {
    let mut booted = photon("1.5.0");
    c.bench_function("boot (Photon 1.5.0, app runs)", |b| {
        b.iter(|| booted.reset(ResetReason::Button, None))
    });

    let base = photon("0.7.0");
    let files: Vec<Vec<u8>> = [
        "photon-bootloader@1.5.0+lto.bin",
        "photon-system-part1@1.5.0.bin",
        "photon-system-part2@1.5.0.bin",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let mut once = base.clone();
    let before = once.flash_stats().modelled_us;
    update(&mut once, &files);
    eprintln!(
        "full system update over OTA: modelled device time {:.1} s (flash erase/program only)",
        (once.flash_stats().modelled_us - before) as f64 / 1e6
    );
    c.bench_function("full system update over OTA (wall time)", |b| {
        b.iter_batched(
            || base.clone(),
            |mut d| update(&mut d, &files),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(device, benches);
criterion_main!(device);
