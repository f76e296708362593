#![no_main]
//! See `checks/vhd_footer.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vhd_footer::check(data));
