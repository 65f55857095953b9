//! The flash physics lower bound of writing a module: the erase and program time the device's
//! timing model charges for the sectors the module touches, with no USB at all. Used by
//! `bench/dfu.sh`.
//!
//! Usage: `cargo run --example flash_lower_bound -- PLATFORM FILE`; prints one JSON object.

use modflash_device::{Device, Space};
use modflash_module::{platform_by_name, Module};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [platform, file] = args.as_slice() else {
        eprintln!("usage: flash_lower_bound PLATFORM FILE");
        std::process::exit(2);
    };
    let result = (|| -> Result<String, String> {
        let p = platform_by_name(platform).ok_or(format!("unknown platform {platform}"))?;
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let m = Module::parse(&bytes).map_err(|e| format!("{file} is not a module: {e}"))?;
        let address = m.info.start_address;
        let mut d = Device::blank(p, [0; 12]).map_err(|e| e.to_string())?;
        let (t0, sectors0) = (d.flash_stats().modelled_us, d.flash_stats().sectors_erased);
        d.flash_mut()
            .erase_range(Space::Internal, address, bytes.len())
            .map_err(|e| e.to_string())?;
        let t1 = d.flash_stats().modelled_us;
        d.flash_mut()
            .program(Space::Internal, address, &bytes)
            .map_err(|e| e.to_string())?;
        let t2 = d.flash_stats().modelled_us;
        Ok(format!(
            "{{\"address\":{address},\"bytes\":{},\"sectors_erased\":{},\"erase_us\":{},\"program_us\":{},\"total_us\":{}}}",
            bytes.len(),
            d.flash_stats().sectors_erased - sectors0,
            t1 - t0,
            t2 - t1,
            t2 - t0
        ))
    })();
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
