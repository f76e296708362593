//! `ckptfs info FILE`: one file's own facts, as its format knows them. Needs no parent,
//! so it works on a checkpoint whose parent is missing.

use std::path::Path;

use crate::chain::parent::canonical;
use crate::Result;

pub fn run(file: &Path, json: bool) -> Result<()> {
    let f = crate::format::open(&canonical(file)?)?;
    let info = f.info()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info.json).expect("info serializes"));
    } else {
        print!("{}", info.text);
    }
    Ok(())
}
