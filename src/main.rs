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
            let argv: Vec<String> = std::env::args().collect();
            if code == 2 && std::env::args_os().any(|a| a == "--json") {
                // The error once, as JSON on stdout; stderr gets its one line
                // (clap's usage block and help are for people reading text).
                let message = cli::usage_message(&e, &argv);
                eprintln!("error: {message}");
                print_json(&mtlsca::Error::Usage(message).to_json(), false);
                return ExitCode::from(code);
            }
            match cli::usage_hint(&e, &argv) {
                Some(text) => eprint!("{text}"),
                None => {
                    let _ = e.print();
                }
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
            // One line on stderr; under --json the error also goes to stdout, once,
            // as the one JSON document (unless the command printed its document
            // already, e.g. a damaged store's report) or, after a batch's JSON
            // lines, as one more line.
            eprintln!("error: {e}");
            if json && !cli::render::json_printed() {
                print_json(&e.to_json(), cli::render::json_lines());
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// One JSON document on stdout (one line when `line`, after JSON lines); a
/// closed stdout is not a panic.
fn print_json(v: &serde_json::Value, line: bool) {
    use std::io::Write as _;
    let text = if line {
        serde_json::to_string(v)
    } else {
        serde_json::to_string_pretty(v)
    };
    let _ = writeln!(std::io::stdout(), "{}", text.unwrap_or_default());
}
