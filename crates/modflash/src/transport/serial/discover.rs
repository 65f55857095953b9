//! Particle serial ports attached now, found by USB vendor/product id.

use std::path::Path;

use modflash_module::platform::{platform_by_usb, Platform};

use super::{find_device_id, SerialError};

/// A Particle device's serial port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticlePort {
    /// The port path (`/dev/ttyACM0`).
    pub port: String,
    /// The platform its USB id names.
    pub platform: &'static Platform,
    /// The device id from the USB serial number, when it carries one.
    pub device_id: Option<String>,
    /// Its USB vendor and product id.
    pub usb_id: (u16, u16),
}

/// Particle serial ports attached now, found by USB vendor/product id (normal-mode ids: a
/// device in DFU mode has no serial port).
pub fn discover() -> Result<Vec<ParticlePort>, SerialError> {
    // serialport's sysfs scan panics when /sys/class/tty is missing (containers).
    if cfg!(target_os = "linux") && !Path::new("/sys/class/tty").is_dir() {
        return Ok(Vec::new());
    }
    let ports = serialport::available_ports()
        .map_err(|e| SerialError::Discovery(format!("cannot list serial ports: {e}")))?;
    let mut found: Vec<ParticlePort> = ports
        .into_iter()
        .filter_map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(usb) => {
                let (platform, dfu) = platform_by_usb(usb.vid, usb.pid)?;
                (!dfu).then(|| ParticlePort {
                    port: p.port_name,
                    platform,
                    device_id: usb.serial_number.as_deref().and_then(find_device_id),
                    usb_id: (usb.vid, usb.pid),
                })
            }
            _ => None,
        })
        .collect();
    found.sort_by(|a, b| a.port.cmp(&b.port));
    Ok(found)
}

/// The port of the device with `device_id`, or of the only Particle device when `None`.
pub fn find_port(device_id: Option<&str>) -> Result<ParticlePort, SerialError> {
    let ports = discover()?;
    match device_id {
        Some(id) => ports
            .into_iter()
            .find(|p| p.device_id.as_deref() == Some(id))
            .ok_or_else(|| {
                SerialError::Discovery(format!(
                    "no Particle serial port belongs to device {id} (is it in DFU mode or unplugged?)"
                ))
            }),
        None => {
            let count = ports.len();
            let names = ports
                .iter()
                .map(|p| p.port.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut ports = ports.into_iter();
            match (ports.next(), count) {
                (Some(only), 1) => Ok(only),
                (None, _) => Err(SerialError::Discovery(
                    "no Particle device found on a USB serial port".into(),
                )),
                _ => Err(SerialError::Discovery(format!(
                    "{count} Particle devices are attached ({names}); say which one"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_never_panics() {
        // No Particle device is attached here; whatever is, discovery answers.
        let ports = discover().unwrap();
        assert!(ports.iter().all(|p| p.platform.usb.is_some()));
        if ports.is_empty() {
            let e = find_port(None).unwrap_err();
            assert!(e.to_string().contains("no Particle device"), "{e}");
            assert!(miette::Diagnostic::help(&e)
                .unwrap()
                .to_string()
                .contains("--device serial:"));
        }
    }
}
