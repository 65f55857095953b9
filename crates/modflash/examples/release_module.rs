//! One module of a Device OS release as a file: the synthetic image with the release's real
//! header (version, dependencies), as the virtual devices carry it. Used by
//! `bench/particle_cli.sh` for updates that need a module no fixture has.
//!
//! Usage: `cargo run --example release_module -- PLATFORM RELEASE NAME OUTPUT`, where NAME is
//! the module's name in the release (bootloader, system-part1, tinker, …).

use modflash_module::release::platform_release;
use modflash_module::{platform_by_name, synth};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [platform, release, name, output] = args.as_slice() else {
        eprintln!("usage: release_module PLATFORM RELEASE NAME OUTPUT");
        std::process::exit(2);
    };
    let result = (|| -> Result<(), String> {
        let p = platform_by_name(platform).ok_or(format!("unknown platform {platform}"))?;
        let r = platform_release(p, release).ok_or(format!(
            "{platform} has no Device OS {release} in the release table"
        ))?;
        let names: Vec<&str> = r.modules_for(p).map(|m| m.file_name).collect();
        let module = r
            .modules_for(p)
            .find(|m| m.file_name == name.as_str())
            .ok_or(format!(
                "Device OS {release} has no {name} (it has {names:?})"
            ))?;
        std::fs::write(output, synth::synthesize(p, &module))
            .map_err(|e| format!("cannot write {output}: {e}"))
    })();
    if let Err(e) = result {
        eprintln!("release_module: {e}");
        std::process::exit(1);
    }
}
