use std::process::ExitCode;

use clap::Parser;

use ckptfs::cli::{run, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`ckptfs ls ... | head`). The mount daemon keeps Rust's default (ignored), so a
    // closed log pipe can never kill a serving mount.
    if !matches!(cli.command, Command::Mount(_)) {
        // SAFETY: setting a signal disposition before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
        Err(ckptfs::Error::Reported(_)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ckptfs: {e}");
            ExitCode::FAILURE
        }
    }
}
