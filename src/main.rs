//! The `mtlsca` binary: parse, run, map the outcome to an exit code (DESIGN.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;

// The command line is the binary's, not part of the library's API. Its modules
// name library items as `crate::...`: the library's modules are imported here.
#[allow(unused_imports)]
use mtlsca::*;

mod cli;

// mimalloc, not glibc's malloc: `serve` allocates and frees small objects from
// several threads (hyper, rustls, JSON, the engine), where glibc's arenas spent
// about a tenth of its CPU (BENCHMARKS.md). Built without transparent huge
// pages (Cargo.toml): each CLI call would otherwise zero a 2 MiB page at start.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is bad usage (2).
            let code = if e.use_stderr() { 2 } else { 0 };
            let hint = cli::usage_hint(&e, &std::env::args().collect::<Vec<_>>());
            match &hint {
                Some(text) => eprint!("{text}"),
                None => {
                    let _ = e.print();
                }
            }
            if code == 2 && std::env::args_os().any(|a| a == "--json") {
                // The error line and its tip, without clap's usage block.
                let text = hint.unwrap_or_else(|| e.render().to_string());
                let block: Vec<&str> = text
                    .lines()
                    .skip_while(|l| !l.starts_with("error: "))
                    .take_while(|l| !l.trim().is_empty())
                    .map(|l| l.trim_start_matches("error: ").trim())
                    .collect();
                let mut message = vec![block.join(" ")];
                message.extend(
                    text.lines()
                        .filter_map(|l| l.trim_start().strip_prefix("tip: "))
                        .map(String::from),
                );
                message.retain(|m| !m.is_empty());
                let message = if message.is_empty() {
                    e.kind().to_string()
                } else {
                    message.join("; ")
                };
                let err = mtlsca::Error::Usage(message);
                print_json(&err.to_json());
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
                print_json(&e.to_json());
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// One JSON document on stdout; a closed stdout is not a panic.
fn print_json(v: &serde_json::Value) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}
