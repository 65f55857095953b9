//! What a step costs in modelled device time, by transport: the yardstick of a search that may
//! mix transports. The figures come from the device model's own timing (the twin's flash
//! geometry and datasheet timings, its USB transfer time, the bootloader's reset after a
//! leave, the 1 s a mode change waits after its control request), so "cheaper" means what
//! the virtual device would spend. A search on one transport compares bytes instead (the
//! cheapest order on one transport is the one that writes the fewest).

use modflash_device::control::MODE_CHANGE_DELAY_US;
use modflash_device::dct::COPY_SIZE;
use modflash_device::dfuse::{usb_time_us, LEAVE_RESET_US};
use modflash_device::{Device, Space};
use modflash_module::platform::{Layout, Location};
use modflash_module::rules::DfuPlace;
use modflash_module::ModuleInfo;

use super::types::Via;
use crate::transport::control::POLLING;

/// Bytes per DfuSe block (wTransferSize of every Particle bootloader).
const DFU_BLOCK: usize = 4096;
/// Bytes per firmware-update DATA request (the chunk size Device OS asks for).
const USB_CHUNK: usize = 1024;
/// Bytes per YMODEM block.
const YMODEM_BLOCK: usize = 1024;
/// One YMODEM block's round trip on a USB CDC port (the block, the device's ACK).
const YMODEM_ROUND_TRIP_US: u64 = 2_000;

/// The cost model of one device.
pub(super) struct Costs<'a> {
    twin: &'a Device,
}

impl<'a> Costs<'a> {
    /// Costs on the twin's flash.
    pub(super) fn new(twin: &'a Device) -> Self {
        Self { twin }
    }

    /// Erasing and programming `len` bytes at `address` of `location`.
    fn flash_us(&self, location: Location, address: u32, len: usize) -> u64 {
        self.twin
            .flash()
            .write_time_us(Space::of(location), address, len)
            .unwrap_or(0)
    }

    /// One rewrite of the DCT (a copy erased and programmed): the device records a pending
    /// update there, and the bootloader marks it done.
    fn dct_write_us(&self) -> u64 {
        let loc = self.twin.dct_location();
        self.twin
            .flash()
            .write_time_us(loc.space, loc.copies[0], COPY_SIZE as usize)
            .unwrap_or(0)
    }

    /// One DfuSe download of `len` bytes with its read-back: per block the DNLOAD, two
    /// GETSTATUS and the UPLOAD that verifies it.
    fn dfu_transfers_us(len: usize) -> u64 {
        let blocks = len.div_ceil(DFU_BLOCK) as u64;
        blocks * (2 * usb_time_us(DFU_BLOCK) + 2 * usb_time_us(6))
    }

    /// A firmware update of `len` bytes over control requests: per chunk INIT, CHECK for the
    /// buffer, SEND, CHECK for the result, each CHECK after the first poll's wait.
    fn usb_transfers_us(len: usize) -> u64 {
        let chunks = len.div_ceil(USB_CHUNK) as u64;
        let poll_us = u64::from(POLLING.delay(0)) * 1000;
        chunks * (4 * usb_time_us(14) + usb_time_us(USB_CHUNK + 3) + 2 * poll_us)
    }

    /// What writing `module` costs over `via` when the previous step went over `previous`
    /// (the device is in DFU mode after a DFU step, runs its firmware otherwise). `place` is
    /// where DFU puts it; `layout` the memory map in force (its OTA region takes updates).
    pub(super) fn step_us(
        &self,
        via: Via,
        module: &ModuleInfo,
        len: usize,
        place: Option<DfuPlace>,
        layout: &Layout,
        previous: Option<Via>,
    ) -> u64 {
        let location = layout
            .find_bounds(module.slot())
            .map_or(Location::Internal, |b| b.location);
        let own = self.flash_us(location, module.start_address, len);
        let ota = self.flash_us(layout.ota.location, layout.ota.start, len);
        match via {
            Via::Dfu => {
                // Into DFU mode (a control request, 1 s, then the bootloader) and out again
                // (its reset after the leave), paid once per stay in DFU mode.
                let switch = if previous == Some(Via::Dfu) {
                    0
                } else {
                    MODE_CHANGE_DELAY_US + LEAVE_RESET_US
                };
                // A staged bootloader is written to the OTA region, flagged in the DCT and
                // copied at the boot.
                let flash = match place {
                    Some(DfuPlace::Stage { .. }) => ota + own + 2 * self.dct_write_us(),
                    _ => own,
                };
                switch + Self::dfu_transfers_us(len) + flash
            }
            // Into the OTA region, recorded in the DCT, then copied to its own region by the
            // boot (a bootloader at once); leaving DFU mode first was paid when it was entered.
            Via::Usb => Self::usb_transfers_us(len) + ota + own + 2 * self.dct_write_us(),
            Via::Serial => {
                let blocks = len.div_ceil(YMODEM_BLOCK) as u64;
                blocks * YMODEM_ROUND_TRIP_US + ota + own + 2 * self.dct_write_us()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::ModuleFunction;
    use modflash_testkit::device::{device, release_app};

    fn app_info(platform_id: u16, release: &str) -> (ModuleInfo, usize) {
        let bytes = release_app(platform_id, release);
        let m = modflash_module::Module::parse(&bytes).unwrap();
        assert_eq!(m.info.function, ModuleFunction::UserPart);
        (m.info, bytes.len())
    }

    #[test]
    fn each_transport_is_cheaper_somewhere() {
        // A Photon in DFU mode: DFU writes the app without a mode change.
        let d = device(6).release("1.5.0").running();
        let (info, len) = app_info(6, "1.5.0");
        let costs = Costs::new(&d);
        let layout = d.layout();
        let in_dfu = costs.step_us(Via::Dfu, &info, len, None, layout, Some(Via::Dfu));
        let usb = costs.step_us(Via::Usb, &info, len, None, layout, None);
        assert!(
            in_dfu < usb,
            "photon in DFU mode: dfu {in_dfu} µs, usb {usb} µs"
        );
        // Running: the trip into DFU mode and back costs what the OTA region's second erase
        // does not.
        let dfu = costs.step_us(Via::Dfu, &info, len, None, layout, None);
        assert_eq!(dfu - in_dfu, MODE_CHANGE_DELAY_US + LEAVE_RESET_US);
        // A system part: sent in 1 KB requests and erased twice, USB costs more.
        let part = modflash_testkit::fixture("photon-system-part2@1.5.0.bin");
        let info = modflash_module::Module::parse(&part).unwrap().info;
        let dfu = costs.step_us(Via::Dfu, &info, part.len(), None, layout, None);
        let usb = costs.step_us(Via::Usb, &info, part.len(), None, layout, None);
        assert!(dfu < usb, "photon system part: dfu {dfu} µs, usb {usb} µs");
        // Argon: 4 KB pages; a running device skips the trip through DFU mode.
        let d = device(12).release("2.2.0").running();
        let (info, len) = app_info(12, "2.2.0");
        let costs = Costs::new(&d);
        let dfu = costs.step_us(Via::Dfu, &info, len, None, d.layout(), None);
        let usb = costs.step_us(Via::Usb, &info, len, None, d.layout(), None);
        assert!(usb < dfu, "argon: dfu {dfu} µs, usb {usb} µs");
    }
}
