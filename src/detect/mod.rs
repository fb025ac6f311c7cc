//! Detectors turn what the source read (decoded logs, call outcomes, probe
//! answers, head progress) into evidence for the classifier. Each detector
//! is small, independent and free of I/O.

pub mod failed_tx;
pub mod halt_revert;
pub mod pause;
pub mod probe;
pub mod revert_spike;
pub mod stall;
