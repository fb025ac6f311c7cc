//! Detectors turn decoded logs (and, later, receipts, probes and time) into
//! signals. Each detector is small, independent and free of I/O.

pub mod pause;
