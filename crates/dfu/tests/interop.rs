//! Interop with Debian's `dfuse-pack` (dfu-util package): it builds, we parse; we build, it dumps.
//! Skips loudly when the tool is missing, unless `MODFLASH_REQUIRE_INTEROP=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use modflash_dfu::{DfuseElement, DfuseFile, DfuseTarget};
use modflash_testkit::interop;

/// The tool, or `None` when `test` is skipped without it.
fn tool(test: &str) -> Option<PathBuf> {
    let mut tools = interop::tools(test, &["dfuse-pack"], "apt-get install dfu-util")?;
    Some(tools.remove(0))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("modflash-dfu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run dfuse-pack");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

#[test]
fn dfuse_pack_output_parses_and_rewrites_byte_identical() {
    let Some(pack) = tool("dfuse_pack_output_parses_and_rewrites_byte_identical") else {
        return;
    };
    let dir = scratch("pack");
    let (app, sys, dct) = (bytes(10_000, 1), bytes(3000, 2), bytes(64, 3));
    std::fs::write(dir.join("app.bin"), &app).unwrap();
    std::fs::write(dir.join("sys.bin"), &sys).unwrap();
    std::fs::write(dir.join("dct.bin"), &dct).unwrap();
    let out = dir.join("out.dfu");
    run(Command::new(&pack)
        .current_dir(&dir)
        .args([
            "-b",
            "0x080A0000:app.bin",
            "-b",
            "0x08020000:sys.bin",
            "-b",
            "1762@1:dct.bin",
        ])
        .args(["-D", "0x2b04:0xd006"])
        .arg(&out));
    let file = std::fs::read(&out).unwrap();
    let parsed = DfuseFile::parse(&file).unwrap();
    let st = Some(b"ST...".to_vec());
    assert_eq!(
        parsed,
        DfuseFile {
            vendor_id: 0x2b04,
            product_id: 0xd006,
            device_version: 0,
            targets: vec![
                DfuseTarget {
                    alt: 0,
                    name: st.clone(),
                    elements: vec![
                        DfuseElement {
                            address: 0x080A_0000,
                            data: app
                        },
                        DfuseElement {
                            address: 0x0802_0000,
                            data: sys
                        },
                    ],
                },
                DfuseTarget {
                    alt: 1,
                    name: st,
                    elements: vec![DfuseElement {
                        address: 1762,
                        data: dct
                    }]
                },
            ],
        }
    );
    assert_eq!(
        parsed.to_bytes().unwrap(),
        file,
        "our writer reproduces dfuse-pack's bytes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn our_file_is_read_back_by_dfuse_pack() {
    let Some(pack) = tool("our_file_is_read_back_by_dfuse_pack") else {
        return;
    };
    let dir = scratch("dump");
    let images = [bytes(5000, 9), bytes(17, 4), bytes(4096, 5)];
    let f = DfuseFile {
        vendor_id: 0x2b04,
        product_id: 0xd006,
        device_version: 0x0250,
        targets: vec![
            DfuseTarget {
                alt: 0,
                name: Some(b"Internal Flash".to_vec()),
                elements: vec![
                    DfuseElement {
                        address: 0x080A_0000,
                        data: images[0].clone(),
                    },
                    DfuseElement {
                        address: 0x0802_0000,
                        data: images[1].clone(),
                    },
                ],
            },
            DfuseTarget {
                alt: 1,
                name: None,
                elements: vec![DfuseElement {
                    address: 0,
                    data: images[2].clone(),
                }],
            },
        ],
    };
    let path = dir.join("ours.dfu");
    std::fs::write(&path, f.to_bytes().unwrap()).unwrap();
    let text = run(Command::new(&pack).current_dir(&dir).arg("-d").arg(&path));
    assert!(!text.contains("ERROR"), "dfuse-pack complained:\n{text}");
    let len = std::fs::metadata(&path).unwrap().len();
    for line in [
        format!("v1, image size: {len}, targets: 2"),
        "alt setting: 0, name: \"b'Internal Flash'\"".to_string(),
        "alt setting: 1, name: \"\"".to_string(),
        "0, address: 0x080a0000, size: 5000".to_string(),
        "1, address: 0x08020000, size: 17".to_string(),
        "0, address: 0x00000000, size: 4096".to_string(),
        "usb: 2b04:d006, device: 0x0250, dfu: 0x011a".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    let dumped = |t: usize, e: usize| -> Vec<u8> {
        let p = format!("{}.target{t}.image{e}.bin", path.display());
        std::fs::read(Path::new(&p)).unwrap()
    };
    assert_eq!(dumped(0, 0), images[0]);
    assert_eq!(dumped(0, 1), images[1]);
    assert_eq!(dumped(1, 0), images[2]);
    let _ = std::fs::remove_dir_all(&dir);
}
