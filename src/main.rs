use std::process::ExitCode;

use clap::Parser;

use ckptfs::cli::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // fatfs warns about harmless layout choices of mkfs.fat on every volume.
    let filter = format!("{level},fatfs=error");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp(None)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckptfs: {e}");
            ExitCode::FAILURE
        }
    }
}
