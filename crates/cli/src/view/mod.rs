//! How results are shown: modules, plans, the catalogue, memory maps and virtual devices, in
//! words, as stable JSON and as pictures.

pub mod assets;
pub mod catalog;
pub mod fleet;
pub mod map_svg;
pub mod map_text;
pub mod module_json;
pub mod module_text;
pub mod plan;
pub mod sim;
pub mod stream;
pub mod table;
