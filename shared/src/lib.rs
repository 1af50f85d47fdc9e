//! nmflow-format: the model file format shared by host and device (no_std).
#![no_std]
