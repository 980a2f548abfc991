//! The `mtlsca` binary: parse, run, map the outcome to an exit code (DESIGN.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
// The command line is the binary's, not part of the library's API. Its modules
// name library items as `crate::...`: the library's modules are imported here.
#[allow(unused_imports)]
use mtlsca::*;

mod cli;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is bad usage (2).
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            if code == 2 && std::env::args_os().any(|a| a == "--json") {
                let err = mtlsca::Error::Usage(e.kind().to_string());
                println!("{}", err.to_json());
            }
            return ExitCode::from(code);
        }
    };
    let json = cli.global.json;
    // Only main reads the clock; everything below takes `now` as data.
    let now = time::OffsetDateTime::now_utc();
    match cli::run(cli, now) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("error: {e}");
            if json && !cli::render::json_printed() {
                // One JSON document on stdout for machines, the exit code kept.
                println!(
                    "{}",
                    serde_json::to_string_pretty(&e.to_json()).unwrap_or_default()
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}
