//! Choosing the device when none is named: the one attached device is used (and named); with
//! several, a terminal gets a choice and a script an error listing them. Virtual devices are
//! never picked this way.

use std::io::IsTerminal;

use modflash::devices::{attached, Found};
use modflash::DeviceRef;

use crate::cmd::devices::table;
use crate::ui::{note, CliError};

/// What to do with the devices found.
#[derive(Debug, PartialEq)]
enum Choice<'a> {
    /// Exactly one usable device: use it.
    Use(&'a Found),
    /// Several, and someone at a terminal to ask.
    Ask(Vec<&'a Found>),
    /// Nothing usable, or several and nobody to ask: an error.
    Refuse(CliError),
}

/// The choice among `found` (devices that cannot be opened are left out), asking only when
/// `interactive`.
fn choose(found: &[Found], interactive: bool) -> Choice<'_> {
    let usable: Vec<&Found> = found.iter().filter(|d| d.error.is_none()).collect();
    match usable.as_slice() {
        [] => Choice::Refuse(
            CliError::usage("no device is attached and none is named").with_help(
                "connect one over USB, or name one: --device sim:NAME (`modflash devices` lists them)",
            ),
        ),
        [only] => Choice::Use(only),
        _ if interactive => Choice::Ask(usable),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|d| format!("--device {}", d.reference))
                .collect();
            Choice::Refuse(
                CliError::usage(format!(
                    "{} devices are attached; say which: {}",
                    several.len(),
                    list.join(", ")
                ))
                .with_help(
                    "or set MODFLASH_DEVICE; `flash` also takes several --device, or --device all",
                ),
            )
        }
    }
}

/// Asks which of `several` to use, showing the devices table.
fn ask<'a>(several: &[&'a Found]) -> Result<&'a Found, CliError> {
    let owned: Vec<Found> = several.iter().map(|d| (*d).clone()).collect();
    let text = table(&owned);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let items: Vec<String> = lines.map(str::to_string).collect();
    let pick = dialoguer::Select::new()
        .with_prompt(format!("Which device?\n  {header}"))
        .items(&items)
        .default(0)
        .interact_on(&dialoguer::console::Term::stderr())
        .map_err(|e| CliError::usage(format!("cannot ask which device: {e}")))?;
    several
        .get(pick)
        .copied()
        .ok_or_else(|| CliError::usage("no device was chosen"))
}

/// The device to use when `--device` is not given.
pub fn one() -> Result<DeviceRef, CliError> {
    let found = attached().devices;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let chosen = match choose(&found, interactive) {
        Choice::Use(only) => {
            note(&format!(
                "using {} ({} {})",
                only.reference,
                only.platform.map_or("unknown platform", |p| p.display_name),
                only.device_id.as_deref().unwrap_or("")
            ));
            only
        }
        Choice::Ask(several) => ask(&several)?,
        Choice::Refuse(e) => return Err(e),
    };
    chosen
        .reference
        .parse()
        .map_err(|e: modflash::devref::BadDeviceRef| CliError::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash::devices::Kind;

    fn usb(id: &str) -> Found {
        Found {
            kind: Kind::Usb,
            reference: format!("usb:{id}"),
            platform: modflash_module::platform(6),
            mode: Some("dfu".into()),
            device_id: Some(id.into()),
            device_os: None,
            usb_id: Some((0x2b04, 0xd006)),
            node: Some("/dev/bus/usb/001/002".into()),
            port_path: Some("1-1".into()),
            port: None,
            error: None,
        }
    }

    #[test]
    fn the_one_device_is_used() {
        let found = [usb("aa")];
        assert_eq!(choose(&found, false), Choice::Use(&found[0]));
        assert_eq!(choose(&found, true), Choice::Use(&found[0]));
    }

    #[test]
    fn several_at_a_terminal_are_offered_and_in_a_script_listed() {
        let found = [usb("aa"), usb("bb")];
        assert_eq!(
            choose(&found, true),
            Choice::Ask(vec![&found[0], &found[1]])
        );
        let Choice::Refuse(e) = choose(&found, false) else {
            panic!("a script must not be asked")
        };
        let text = e.to_string();
        assert!(text.contains("--device usb:aa, --device usb:bb"), "{text}");
    }

    #[test]
    fn a_device_that_cannot_be_opened_is_not_chosen() {
        let mut broken = usb("aa");
        broken.error = Some("permission denied".into());
        let found = [broken, usb("bb")];
        assert_eq!(choose(&found, false), Choice::Use(&found[1]));
        assert!(matches!(choose(&found[..1], true), Choice::Refuse(_)));
    }
}
