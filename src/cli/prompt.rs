//! Asking for a secret on the terminal: the prompt and the answer go through
//! `/dev/tty` with echo off, so nothing typed is shown or lands in a pipe.

use std::io::{BufRead, Write};

use crate::error::{Error, Result};

/// Whether there is a terminal to ask on (standard input and error are one).
pub fn can_prompt() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Ask for a new secret twice, with echo off; both answers must agree and the
/// secret must not be empty.
pub fn new_secret(what: &str) -> Result<String> {
    let first = ask(&format!("{what}: "))?;
    if first.is_empty() {
        return Err(Error::Usage(format!("an empty {what} protects nothing")));
    }
    let second = ask(&format!("{what} (again): "))?;
    if first != second {
        return Err(Error::Usage(format!(
            "the two {what}s differ; nothing was written"
        )));
    }
    Ok(first)
}

/// Ask for a secret once, with echo off (an existing one: a wrong answer is
/// found out by what it unlocks).
pub fn secret(what: &str) -> Result<String> {
    ask(&format!("{what}: "))
}

/// The passphrase of the encrypted CA keys in `ca_dir`, asked on the terminal
/// when a key is first unlocked (the library calls it; at most once a command).
pub fn ca_passphrase(ca_dir: &std::path::Path) -> crate::ca::PassphrasePrompt {
    let what = format!("passphrase of the CA keys in {}", ca_dir.display());
    crate::ca::PassphrasePrompt::new(move || {
        let answer = zeroize::Zeroizing::new(secret(&what)?);
        crate::keypair::Passphrase::new(answer.as_bytes().to_vec(), "the terminal")
    })
}

/// One line from the terminal with echo off (restored whatever happens).
fn ask(prompt: &str) -> Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let tty_err = |e: std::io::Error| Error::io("/dev/tty", e);
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(tty_err)?;
    let saved = tcgetattr(&tty).map_err(|e| tty_err(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| tty_err(e.into()))?;
    let answer = (|| -> std::io::Result<String> {
        let mut w = &tty;
        w.write_all(prompt.as_bytes())?;
        w.flush()?;
        let mut line = String::new();
        std::io::BufReader::new(std::io::Read::take(&tty, 4096)).read_line(&mut line)?;
        Ok(line)
    })();
    let restored = tcsetattr(&tty, OptionalActions::Now, &saved);
    let mut line = answer.map_err(tty_err)?;
    restored.map_err(|e| tty_err(e.into()))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}
