#![no_main]
//! See `checks/vhdx_file.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vhdx_file::check(data));
