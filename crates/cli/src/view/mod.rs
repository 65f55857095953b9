//! How results are shown: modules, plans and virtual devices, in words and as stable JSON.

pub mod fleet;
pub mod module_json;
pub mod module_text;
pub mod plan;
pub mod sim;
pub mod stream;
pub mod table;
