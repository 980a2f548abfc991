//! The README's tour, run verbatim: every `sh` block marked `<!-- tour -->` runs
//! in order in a fresh directory, with `mtlsca` on PATH, and each command must
//! exit as documented (0, or the `# exit N` its comment states). The README
//! cannot drift from the binary.

use crate::common::*;

/// The commands of the README's tour blocks, continuation lines joined, with the
/// exit code each is documented to have.
fn tour() -> Vec<(String, i32)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.trim() != "<!-- tour -->" {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "a tour block is ```sh"
        );
        let mut cmd = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            if let Some(head) = l.strip_suffix('\\') {
                cmd.push_str(head);
                continue;
            }
            cmd.push_str(l);
            let full = std::mem::take(&mut cmd);
            if full.trim().is_empty() || full.trim_start().starts_with('#') {
                continue;
            }
            let want = full
                .split("# exit ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.push((full, want));
        }
    }
    out
}

#[test]
fn the_readme_tour_runs_verbatim() {
    let cmds = tour();
    assert!(cmds.len() >= 12, "the tour has {} commands", cmds.len());
    let env = Env::new();
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("mtlsca")).unwrap();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    let mut script = String::from("set +e\n");
    for (i, (c, _)) in cmds.iter().enumerate() {
        script.push_str(&format!("{c}\necho \"{i} $?\" >> ../rc.log\n"));
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("bash");
    let log = std::fs::read_to_string(env.path("rc.log")).unwrap_or_default();
    let codes: Vec<i32> = log
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(codes.len(), cmds.len(), "{}", text(&out));
    for ((c, want), got) in cmds.iter().zip(&codes) {
        assert_eq!(
            got,
            want,
            "README command `{c}` exited {got}, documented {want}:\n{}",
            text(&out)
        );
    }
}
