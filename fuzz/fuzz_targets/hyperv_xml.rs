#![no_main]
//! See `checks/hyperv_xml.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::hyperv_xml::check(data));
