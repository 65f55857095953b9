//! The modflash command-line tool.
fn main() {}
