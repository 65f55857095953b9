//! A model of Device OS module handling: flash, DCT, validation, boot, OTA, DfuSe and serial console.
