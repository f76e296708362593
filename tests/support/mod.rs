//! Test support shared by the integration tests and `examples/make_fixtures.rs`.
//!
//! Each test binary uses only part of this, hence the blanket allow.
#![allow(dead_code)]

pub mod hyperv_config;
pub mod model;
pub mod vhd_writer;
pub mod vhdx_writer;
pub mod vmcx_writer;
pub mod vmdk_writer;
pub mod vmware_config;
