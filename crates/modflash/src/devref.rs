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

/// A `--device` value that could not be understood, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadDeviceRef {
    /// Not one of the forms.
    #[error(
        "`{0}` is not a device reference: a reference says how the device is reached — usb, \
         usb:DEVICE_ID, serial:PORT or sim:NAME"
    )]
    Form(String),
    /// `usb:` followed by something that is not a device id.
    #[error(
        "`usb:{0}` does not name a device id: an id is 24 hexadecimal digits \
         (usb:3b0021001747353236343033); `{0}` has {1}"
    )]
    DeviceId(String, usize),
    /// `sim:` followed by something that cannot be a virtual device's name.
    #[error(
        "`sim:{0}` cannot name a virtual device: names are letters, digits, `-` and `_` \
         (at most 64)"
    )]
    SimName(String),
    /// `serial:` without a port.
    #[error("`serial:` needs the port: serial:/dev/ttyACM0")]
    NoPort,
}

impl FromStr for DeviceRef {
    type Err = BadDeviceRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "usb" => Ok(Self::Usb),
            Some(("usb", id)) if id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok(Self::UsbId(id.to_ascii_lowercase()))
            }
            Some(("usb", id)) => Err(BadDeviceRef::DeviceId(id.to_string(), id.chars().count())),
            Some(("serial", port)) if !port.is_empty() => Ok(Self::Serial(port.to_string())),
            Some(("serial", _)) => Err(BadDeviceRef::NoPort),
            Some(("sim", name)) if crate::sim::valid_name(name) => Ok(Self::Sim(name.to_string())),
            Some(("sim", name)) => Err(BadDeviceRef::SimName(name.to_string())),
            _ => Err(BadDeviceRef::Form(s.to_string())),
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

    #[test]
    fn a_bad_reference_says_what_is_wrong_with_it() {
        let why = |s: &str| s.parse::<DeviceRef>().unwrap_err().to_string();
        assert!(why("old").contains("usb, usb:DEVICE_ID, serial:PORT or sim:NAME"));
        assert!(why("usb:0123").contains("24 hexadecimal digits"));
        assert!(why("usb:0123").contains("`0123` has 4"));
        assert!(why("sim:../x").contains("letters, digits"));
        assert!(why("serial:").contains("serial:/dev/ttyACM0"));
    }
}
