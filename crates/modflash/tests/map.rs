//! The map model: regions, placed modules, fill and dependency verdicts of virtual devices,
//! of a plan's before and after, and of module files.

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::map::{
    maps_of_files, plan_maps, Basis, Check, DeviceMap, Region, RegionKind, Verdict,
};
use modflash::plan::{plan, Force, Request, Via};
use modflash_module::platform::Store;
use modflash_module::{platform, ModuleFunction, ModuleRef};
use modflash_testkit::device::{device, release_app};
use modflash_testkit::fixture;

fn region<'a>(map: &'a DeviceMap, name: &str) -> &'a Region {
    map.memories
        .iter()
        .flat_map(|m| &m.regions)
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("no region {name} in {map:#?}"))
}

fn names(map: &DeviceMap, memory: &str) -> Vec<String> {
    map.memories
        .iter()
        .find(|m| m.name == memory)
        .unwrap_or_else(|| panic!("no {memory} memory"))
        .regions
        .iter()
        .map(Region::name)
        .collect()
}

#[test]
fn a_photon_with_052_in_its_regions() {
    let d = device(6).release("0.5.2").running();
    let map = DeviceMap::of_device(&d, Basis::Flash);
    assert_eq!((map.platform, map.layout), ("Photon", "photon"));
    assert_eq!(map.system.as_deref(), Some("Device OS 0.5.2"));
    assert_eq!(map.mode, Some("app"));
    assert_eq!(map.memories.len(), 1, "the Photon has no external flash");
    assert_eq!(
        names(&map, "internal"),
        [
            "bootloader",
            "DCT",
            "system part 1",
            "system part 2",
            "user part 1",
            "OTA staging",
            "user part 1 (factory)"
        ]
    );
    let part1 = region(&map, "system part 1");
    assert_eq!((part1.start, part1.end), (0x0802_0000, 0x0806_0000));
    assert!(part1.valid());
    assert!(part1.used > 0 && part1.used < part1.size(), "{part1:?}");
    assert_eq!(part1.modules[0].version, 17);
    assert_eq!(part1.modules[0].releases, ["0.5.2"]);
    assert!(region(&map, "user part 1 (factory)").modules.is_empty());
    let dct = region(&map, "DCT");
    assert_eq!((dct.start, dct.used), (0x0800_4000, 0x8000));
    assert!(map.all_valid());
    let deps: Vec<(String, String, Verdict)> = map
        .dependencies
        .iter()
        .map(|e| (e.slot().to_string(), e.target().to_string(), e.verdict))
        .collect();
    assert_eq!(
        deps,
        [
            ("system part 2".into(), "system part 1".into(), Verdict::Met),
            ("user part 1".into(), "system part 2".into(), Verdict::Met),
        ]
    );
}

#[test]
fn an_app_for_150_on_052_fails_its_dependency_with_the_fix() {
    let mut d = device(6).release("0.5.2").without_app().powered_off();
    d.install_user_app(&release_app(6, "1.5.0")).unwrap();
    d.power_on();
    let map = DeviceMap::of_device(&d, Basis::Flash);
    assert_eq!(map.mode, Some("safe_mode"));
    let user = region(&map, "user part 1");
    assert_eq!(user.modules[0].failed, [Check::Dependencies]);
    let edge = map
        .dependencies
        .iter()
        .find(|e| e.function == ModuleFunction::UserPart)
        .unwrap();
    assert_eq!(edge.verdict, Verdict::Unmet);
    assert_eq!(edge.installed, Some(17));
    assert_eq!(
        edge.fix.as_deref(),
        Some("system part 2 of Device OS 1.5.0 or later")
    );
    assert!(!map.all_valid());
}

#[test]
fn the_plan_maps_show_what_the_plan_writes() {
    let twin = device(6).release("0.5.2").running();
    let mut catalog = Catalog::default();
    catalog.add_release_table(platform::platform(6).unwrap());
    let app =
        Candidate::from_bytes(Origin::File("app.bin".into()), release_app(6, "1.5.0")).unwrap();
    let plan = plan(&Request {
        twin: &twin,
        targets: vec![app],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    })
    .unwrap();
    let maps = plan_maps(&twin, &plan, Basis::Flash).unwrap();
    assert_eq!(maps.before.system.as_deref(), Some("Device OS 0.5.2"));
    assert!(maps.before.modules().all(|(_, m)| !m.written));
    assert_eq!(maps.after.mode, Some("app"));
    assert_eq!(maps.after.system.as_deref(), Some("Device OS 1.5.0"));
    assert!(maps.after.all_valid());
    for name in ["system part 1", "system part 2", "user part 1"] {
        let r = region(&maps.after, name);
        assert!(r.modules.iter().all(|m| m.written), "{name}: {r:?}");
    }
    // The bootloader of 1.5.0 goes through the OTA region and is installed at the next boot.
    let boot = region(&maps.after, "bootloader");
    assert!(
        boot.modules[0].written && boot.modules[0].version > 7,
        "{boot:?}"
    );
    assert!(maps
        .after
        .dependencies
        .iter()
        .all(|e| e.verdict == Verdict::Met));
}

#[test]
fn gen3_maps_show_the_external_flash() {
    let d = device(12).release("3.1.0").running();
    let map = DeviceMap::of_device(&d, Basis::Flash);
    assert_eq!(map.layout, "gen3-3.1");
    assert_eq!(
        names(&map, "external"),
        ["DCT", "user part 2 (factory)", "OTA staging"]
    );
    let internal = names(&map, "internal");
    assert_eq!(internal.first().map(String::as_str), Some("radio stack"));
    assert!(
        internal.contains(&"user part 1".to_string()),
        "{internal:?}"
    );
    assert!(region(&map, "radio stack").valid());
}

#[test]
fn a_p2_app_grows_down_from_the_end_of_its_region() {
    let d = device(32).release("5.0.0").running();
    let map = DeviceMap::of_device(&d, Basis::Flash);
    let user = region(&map, "user part 1");
    let app = &user.modules[0];
    assert!(app.start > user.start, "{user:?}");
    assert_eq!(app.start + app.size, user.end);
    assert_eq!(user.used, app.size);
}

#[test]
fn files_go_where_they_would_go_and_are_judged_against_each_other() {
    let part1 = fixture("photon-system-part1@1.5.0.bin");
    let part2 = fixture("photon-system-part2@1.5.0.bin");
    let app = release_app(6, "1.5.0");
    let mut broken = app.clone();
    let middle = broken.len() / 2;
    broken[middle] ^= 0xFF;
    let files: Vec<(String, &[u8])> = vec![
        ("part1.bin".into(), &part1),
        ("part2.bin".into(), &part2),
        ("app.bin".into(), &app),
        ("broken.bin".into(), &broken),
    ];
    let maps = maps_of_files(&files).unwrap();
    assert_eq!(maps.len(), 1);
    let map = &maps[0];
    assert_eq!(
        (map.basis, map.platform, map.mode),
        (Basis::Files, "Photon", None)
    );
    let user = region(map, "user part 1");
    let verdicts: Vec<(Option<&str>, &[Check])> = user
        .modules
        .iter()
        .map(|m| (m.file.as_deref(), m.failed.as_slice()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (Some("app.bin"), &[][..]),
            (Some("broken.bin"), &[Check::Integrity][..]),
        ]
    );
    assert!(user.used <= user.size());
    let part2_deps: Vec<(String, Verdict)> = map
        .dependencies
        .iter()
        .filter(|e| e.slot() == ModuleRef::new(ModuleFunction::SystemPart, 2))
        .map(|e| (e.target().to_string(), e.verdict))
        .collect();
    assert_eq!(
        part2_deps,
        [
            ("system part 1".into(), Verdict::Met),
            ("bootloader".into(), Verdict::NotGiven)
        ],
        "part 2 of 1.5.0 needs a bootloader the files do not hold"
    );
    assert!(map
        .dependencies
        .iter()
        .filter(|e| e.function == ModuleFunction::UserPart)
        .all(|e| e.verdict == Verdict::Met));
}

#[test]
fn files_for_two_platforms_make_two_maps_and_a_file_without_a_place_is_listed() {
    let photon = release_app(6, "1.5.0");
    let argon = fixture("argon-softdevice@1.5.0.bin");
    let mut photon_radio = argon.clone();
    // The same radio stack claiming to be for the Photon, which has no place for one.
    let info = modflash_module::Module::parse(&argon).unwrap();
    let at = info.prefix_offset + 12;
    photon_radio[at..at + 2].copy_from_slice(&6u16.to_le_bytes());
    let files: Vec<(String, &[u8])> = vec![
        ("photon.bin".into(), &photon),
        ("argon.bin".into(), &argon),
        ("radio.bin".into(), &photon_radio),
    ];
    let maps = maps_of_files(&files).unwrap();
    let platforms: Vec<&str> = maps.iter().map(|m| m.platform).collect();
    assert_eq!(platforms, ["Photon", "Argon"]);
    assert_eq!(maps[0].unplaced.len(), 1);
    assert_eq!(maps[0].unplaced[0].file, "radio.bin");
    assert_eq!(
        maps[0].unplaced[0].reason,
        "the Photon has no place for a radio stack"
    );
    let radio = region(&maps[1], "radio stack");
    assert_eq!(radio.modules.len(), 1);
    assert_eq!(radio.kind, RegionKind::Module);
    assert_eq!(radio.store, Some(Store::Main));
}

#[test]
fn a_file_that_is_not_a_module_is_an_error_naming_it() {
    let junk = vec![0x42u8; 600];
    let err = maps_of_files(&[("junk.bin".into(), &junk)]).unwrap_err();
    assert!(
        err.to_string().starts_with("junk.bin is not a module"),
        "{err}"
    );
}

#[test]
fn the_map_as_json_names_functions_and_stores() {
    let d = device(6).release("0.5.2").running();
    let json = serde_json::to_value(DeviceMap::of_device(&d, Basis::Flash)).unwrap();
    let regions = &json["memories"][0]["regions"];
    assert_eq!(regions[0]["kind"], "module");
    assert_eq!(regions[0]["function"], "bootloader");
    assert_eq!(regions[0]["store"], "main");
    assert_eq!(regions[1]["kind"], "dct");
    assert_eq!(regions[1]["function"], serde_json::Value::Null);
    assert_eq!(json["dependencies"][1]["needs"]["function"], "system");
    assert_eq!(json["dependencies"][1]["verdict"], "met");
    assert_eq!(json["basis"], "flash");
}
