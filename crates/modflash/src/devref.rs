//! Device references as given to `--device`: `usb`, `usb:DEVICE_ID`, `serial:PORT`, `sim:NAME`.

use std::fmt;
use std::str::FromStr;

/// Which device a command talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRef {
    /// The only Particle device attached over USB.
    Usb,
    /// The USB device with this 24-hex-digit device id.
    UsbId(String),
    /// A serial port (e.g. `/dev/ttyACM0`).
    Serial(String),
    /// A virtual device in the modflash home.
    Sim(String),
}

/// A `--device` value that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a device reference; use usb, usb:DEVICE_ID, serial:PORT or sim:NAME")]
pub struct BadDeviceRef(pub String);

impl FromStr for DeviceRef {
    type Err = BadDeviceRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDeviceRef(s.to_string());
        match s.split_once(':') {
            None if s == "usb" => Ok(Self::Usb),
            Some(("usb", id)) if id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok(Self::UsbId(id.to_ascii_lowercase()))
            }
            Some(("serial", port)) if !port.is_empty() => Ok(Self::Serial(port.to_string())),
            Some(("sim", name)) if crate::sim::valid_name(name) => Ok(Self::Sim(name.to_string())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usb => f.write_str("usb"),
            Self::UsbId(id) => write!(f, "usb:{id}"),
            Self::Serial(p) => write!(f, "serial:{p}"),
            Self::Sim(n) => write!(f, "sim:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("usb".parse(), Ok(DeviceRef::Usb));
        assert_eq!(
            "usb:3B0021001747353236343033".parse(),
            Ok(DeviceRef::UsbId("3b0021001747353236343033".into()))
        );
        assert_eq!(
            "serial:/dev/ttyACM0".parse(),
            Ok(DeviceRef::Serial("/dev/ttyACM0".into()))
        );
        assert_eq!("sim:bench-1".parse(), Ok(DeviceRef::Sim("bench-1".into())));
        for bad in ["", "usb:12", "sim:", "sim:../x", "tcp:1.2.3.4", "serial:"] {
            assert!(bad.parse::<DeviceRef>().is_err(), "{bad}");
        }
    }
}
