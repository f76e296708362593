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
    raise_open_file_limit();
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

/// A disk split into 2 GB extents keeps one open file per extent (a 1 TB Workstation
/// disk has 500, and each snapshot as many again), past the usual soft limit of 1024:
/// raise the soft limit to the hard one, as Go programs do at start. Failure is
/// harmless: opening then fails with a clear EMFILE error naming the file.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
