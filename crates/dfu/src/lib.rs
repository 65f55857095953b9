//! Host-side USB DFU 1.1 and ST DfuSe engine over a Control trait, plus .dfu containers.
