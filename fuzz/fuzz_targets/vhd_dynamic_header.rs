#![no_main]
//! See `checks/vhd_dynamic_header.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vhd_dynamic_header::check(data));
